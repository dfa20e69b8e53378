//! Configuration parsing: defaults, every setting, and the refusal of each bad value.

use super::*;
use std::collections::HashMap;

fn parse(runtime: Runtime, vars: &[(&str, &str)]) -> Result<Config> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(runtime, |k| vars.get(k).cloned())
}

#[test]
fn local_defaults_use_the_sample_folder_and_sqlite() {
    let config = parse(Runtime::Local, &[]).unwrap();
    let TemplatesLocation::Folder(folder) = &config.templates else { panic!("expected a folder") };
    assert!(folder.join("awsprov_templates.json").is_file(), "sample templates at {}", folder.display());
    assert!(matches!(config.store, StoreLocation::Sqlite(ref p) if p.ends_with(".data/hostfactory.sqlite")));
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    let timeouts = LocalTimeouts { headers: Duration::from_secs(10), body: Duration::from_secs(30) };
    assert_eq!(config.local_timeouts, timeouts);
    assert_eq!(config.default_provider, "awsinst");
    assert_eq!(config.table_prefix, "hostfactory");
    assert_eq!(config.templates_cache_ttl, Duration::from_secs(60));
    assert_eq!(config.retention, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        config.reconcile,
        ReconcileTimings {
            pending_timeout: Duration::from_secs(300),
            launch_timeout: Duration::from_secs(900),
            orphan_grace: Duration::from_secs(600),
            launch_template_grace: Duration::from_secs(3600),
            unclaimed: Duration::from_secs(600),
            capacity_quiet: Duration::from_secs(30),
        }
    );
    assert!(!config.metrics, "metrics are off locally unless asked for");
    assert_eq!(config.metrics_namespace, "HostFactory");
    assert_eq!(config.call_budget, Duration::from_secs(20));
    assert_eq!(config.pool_cooldown, Duration::from_secs(180));
    assert_eq!((config.template_failure_limit, config.template_rest), (3, Duration::from_secs(600)));
    let err = parse(Runtime::Local, &[("HOSTFACTORY_CALL_BUDGET_SECS", "0")]).unwrap_err();
    assert!(err.to_string().contains("HOSTFACTORY_CALL_BUDGET_SECS"), "{err}");
}

#[test]
fn metrics_switch() {
    let lambda = parse(Runtime::Lambda, &[("HOSTFACTORY_TEMPLATES", "s3://b/")]).unwrap();
    assert!(lambda.metrics, "on in Lambda by default");
    let on =
        parse(Runtime::Local, &[("HOSTFACTORY_METRICS", "on"), ("HOSTFACTORY_METRICS_NAMESPACE", "Grid")]).unwrap();
    assert_eq!((on.metrics, on.metrics_namespace.as_str()), (true, "Grid"));
    let err = parse(Runtime::Local, &[("HOSTFACTORY_METRICS", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("HOSTFACTORY_METRICS"), "{err}");
}

#[test]
fn store_settings() {
    let config = parse(
        Runtime::Local,
        &[
            ("HOSTFACTORY_STORE", "sqlite:/tmp/x/hf.db"),
            ("HOSTFACTORY_TABLE_PREFIX", "grid-1"),
            ("HOSTFACTORY_RETENTION_DAYS", "7"),
        ],
    )
    .unwrap();
    assert_eq!(config.store, StoreLocation::Sqlite(PathBuf::from("/tmp/x/hf.db")));
    assert_eq!(config.table_prefix, "grid-1");
    assert_eq!(config.retention, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(parse(Runtime::Local, &[("HOSTFACTORY_STORE", "DynamoDB")]).unwrap().store, StoreLocation::DynamoDb);
    for days in ["0", "3651", "-1"] {
        let err = parse(Runtime::Local, &[("HOSTFACTORY_RETENTION_DAYS", days)]).unwrap_err();
        assert!(err.to_string().contains("HOSTFACTORY_RETENTION_DAYS"), "{days}: {err}");
    }
}

#[test]
fn lambda_needs_a_templates_location_and_defaults_to_dynamodb() {
    let err = parse(Runtime::Lambda, &[]).unwrap_err();
    assert!(err.to_string().contains("HOSTFACTORY_TEMPLATES"), "{err}");
    let config = parse(Runtime::Lambda, &[("HOSTFACTORY_TEMPLATES", "s3://bucket/hf/conf")]).unwrap();
    assert_eq!(config.templates, TemplatesLocation::S3 { bucket: "bucket".into(), prefix: "hf/conf/".into() });
    assert_eq!(config.store, StoreLocation::DynamoDb);
}

#[test]
fn s3_location_without_prefix() {
    assert_eq!(
        parse_templates_location("s3://b").unwrap(),
        TemplatesLocation::S3 { bucket: "b".into(), prefix: String::new() }
    );
    assert!(parse_templates_location("s3:///x").is_err());
}

#[test]
fn bad_values_name_the_variable() {
    for (name, value) in [
        ("HOSTFACTORY_STORE", "postgres"),
        ("HOSTFACTORY_LISTEN", "localhost"),
        ("HF_PROVIDER_NAME", "../etc"),
        ("HOSTFACTORY_TABLE_PREFIX", "a b"),
        ("HOSTFACTORY_TEMPLATES_CACHE_TTL_SECS", "soon"),
        ("HOSTFACTORY_RETENTION_DAYS", "forever"),
        ("HOSTFACTORY_PENDING_TIMEOUT_SECS", "5m"),
        ("HOSTFACTORY_LAUNCH_TIMEOUT_SECS", "-1"),
        ("HOSTFACTORY_ORPHAN_GRACE_SECS", "ten"),
        ("HOSTFACTORY_LAUNCH_TEMPLATE_GRACE_SECS", "1h"),
        ("HOSTFACTORY_HEADER_TIMEOUT_SECS", "0"),
        ("HOSTFACTORY_BODY_TIMEOUT_SECS", "soon"),
        ("HOSTFACTORY_POOL_COOLDOWN_SECS", "3m"),
        ("HOSTFACTORY_TEMPLATE_FAILURE_LIMIT", "three"),
        ("HOSTFACTORY_TEMPLATE_REST_SECS", "10m"),
    ] {
        let err = parse(Runtime::Local, &[(name, value)]).unwrap_err();
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}

#[test]
fn events_go_to_a_local_file_by_default_and_anywhere_they_are_told() {
    let local = parse(Runtime::Local, &[]).unwrap();
    assert!(matches!(&local.events, EventsTarget::File(path) if path.ends_with(".data/events.jsonl")), "{:?}", local.events);
    assert_eq!(local.events_source, "hostfactory-aws");
    let cases = [
        ("off", EventsTarget::Off),
        ("file:/tmp/e.jsonl", EventsTarget::File("/tmp/e.jsonl".into())),
        ("eventbridge:hf-bus", EventsTarget::EventBridge("hf-bus".into())),
    ];
    for (value, expected) in cases {
        assert_eq!(parse(Runtime::Local, &[("HOSTFACTORY_EVENTS", value)]).unwrap().events, expected, "{value}");
    }
    for bad in ["kafka:x", "file:", "eventbridge"] {
        let err = parse(Runtime::Local, &[("HOSTFACTORY_EVENTS", bad)]).unwrap_err();
        assert!(err.to_string().starts_with(&format!("configuration error: HOSTFACTORY_EVENTS '{bad}'")), "{err}");
    }
    let lambda = [("HOSTFACTORY_TEMPLATES", "s3://b/p/")];
    assert_eq!(parse(Runtime::Lambda, &lambda).unwrap().events, EventsTarget::Off);
    let deployed = parse(Runtime::Lambda, &[lambda[0], ("HOSTFACTORY_EVENTS", "eventbridge:hf-bus")]).unwrap();
    assert_eq!(deployed.events, EventsTarget::EventBridge("hf-bus".into()));
}
