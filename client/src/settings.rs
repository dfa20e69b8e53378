//! Client settings: environment first, then the provider instance's config file in
//! `${HF_PROVIDER_CONFDIR}` (`${HF_PROVIDER_NAME}prov_config.json`, else `awsprov_config.json`,
//! the names spec §1.3 recommends), then defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::ClientError;
use crate::call::Call;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// AWS Signature V4 for API Gateway's IAM authorization (`execute-api`).
    SigV4,
    /// Unsigned: the local server.
    None,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL without a trailing slash, e.g. `https://abc123.execute-api.us-east-1.amazonaws.com`.
    pub api_url: String,
    /// `HF_PROVIDER_NAME`, sent as `X-HF-Provider-Name`.
    pub provider: Option<String>,
    pub auth: Auth,
    /// Signing region: `AWS_REGION`, the config file's `AWS_REGION`, or the API host name.
    pub region: Option<String>,
    /// Budget for the whole call, retries included.
    pub timeout: Duration,
    /// `HF_PROVIDER_LOGDIR`: where the client appends its log; stderr when unset.
    pub log_dir: Option<PathBuf>,
}

/// Per-call timeout when nothing is configured: above API Gateway's 30 s integration limit.
const DEFAULT_TIMEOUT_SECS: u64 = 45;
/// Kept free under HostFactory's `HF_PROVIDER_ACTION_TIMEOUT` for start-up and output.
const ACTION_TIMEOUT_MARGIN_SECS: u64 = 5;

impl Settings {
    pub fn load(call: Call, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ClientError> {
        let env = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let provider = env("HF_PROVIDER_NAME");
        let file = read_config_file(env("HF_PROVIDER_CONFDIR"), provider.as_deref())?;
        let setting = |name: &str| env(name).or_else(|| file.get(name).and_then(text));

        let api_url = setting("HOSTFACTORY_API_URL").ok_or_else(|| {
            ClientError::Config(
                "HOSTFACTORY_API_URL is not set (environment or the provider config file in HF_PROVIDER_CONFDIR)".into(),
            )
        })?;
        let api_url = api_url.trim_end_matches('/').to_owned();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(ClientError::Config(format!("HOSTFACTORY_API_URL '{api_url}' must start with https:// or http://")));
        }
        let auth = match setting("HOSTFACTORY_AUTH").as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("sigv4") => Auth::SigV4,
            Some("none") => Auth::None,
            Some(other) => return Err(ClientError::Config(format!("HOSTFACTORY_AUTH '{other}' must be sigv4 or none"))),
            None if is_loopback(&api_url) => Auth::None,
            None => Auth::SigV4,
        };
        let region = setting("AWS_REGION").or_else(|| region_from_host(&api_url));
        let timeout = call_timeout(call, &env, &file)?;
        Ok(Settings { api_url, provider, auth, region, timeout, log_dir: env("HF_PROVIDER_LOGDIR").map(PathBuf::from) })
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn read_config_file(confdir: Option<String>, provider: Option<&str>) -> Result<Map<String, Value>, ClientError> {
    let Some(confdir) = confdir else { return Ok(Map::new()) };
    let mut names: Vec<String> = provider.map(|p| format!("{p}prov_config.json")).into_iter().collect();
    names.push("awsprov_config.json".into());
    for name in names {
        let path = PathBuf::from(&confdir).join(&name);
        match std::fs::read(&path) {
            Ok(body) => {
                return serde_json::from_slice(&body).map_err(|err| {
                    ClientError::Config(format!("{} is not a JSON object: {err}", path.display()))
                });
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(ClientError::Config(format!("cannot read {}: {err}", path.display()))),
        }
    }
    Ok(Map::new())
}

/// `HOSTFACTORY_TIMEOUT_SECS` (all calls) or the config file's
/// `HOSTFACTORY_CALL_TIMEOUTS: {"requestMachines": 60}`, capped below `HF_PROVIDER_ACTION_TIMEOUT`.
fn call_timeout(call: Call, env: &impl Fn(&str) -> Option<String>, file: &Map<String, Value>) -> Result<Duration, ClientError> {
    let seconds = |name: &str, value: String| {
        value.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            ClientError::Config(format!("{name} '{value}' is not a positive whole number of seconds"))
        })
    };
    let per_call = file.get("HOSTFACTORY_CALL_TIMEOUTS").and_then(|t| t.get(call.name())).and_then(text);
    let configured = match (per_call, env("HOSTFACTORY_TIMEOUT_SECS"), file.get("HOSTFACTORY_TIMEOUT_SECS").and_then(text)) {
        (Some(v), _, _) => seconds(&format!("HOSTFACTORY_CALL_TIMEOUTS.{}", call.name()), v)?,
        (None, Some(v), _) | (None, None, Some(v)) => seconds("HOSTFACTORY_TIMEOUT_SECS", v)?,
        (None, None, None) => DEFAULT_TIMEOUT_SECS,
    };
    let cap = match env("HF_PROVIDER_ACTION_TIMEOUT") {
        Some(v) => seconds("HF_PROVIDER_ACTION_TIMEOUT", v)?.saturating_sub(ACTION_TIMEOUT_MARGIN_SECS).max(1),
        None => u64::MAX,
    };
    Ok(Duration::from_secs(configured.min(cap)))
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    }
}

fn is_loopback(url: &str) -> bool {
    let host = host(url);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `abc.execute-api.eu-west-1.amazonaws.com` → `eu-west-1`.
fn region_from_host(url: &str) -> Option<String> {
    let labels: Vec<&str> = host(url).split('.').collect();
    let at = labels.iter().position(|l| *l == "execute-api")?;
    labels.get(at + 1).map(|r| (*r).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(call: Call, vars: &[(&str, &str)]) -> Result<Settings, ClientError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load(call, |k| vars.get(k).cloned())
    }

    #[test]
    fn environment_settings_and_defaults() {
        let s = load(Call::RequestMachines, &[("HOSTFACTORY_API_URL", "https://abc.execute-api.eu-west-1.amazonaws.com/")]).unwrap();
        assert_eq!(s.api_url, "https://abc.execute-api.eu-west-1.amazonaws.com");
        assert_eq!(s.auth, Auth::SigV4);
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        let local = load(Call::RequestMachines, &[("HOSTFACTORY_API_URL", "http://127.0.0.1:8080")]).unwrap();
        assert_eq!(local.auth, Auth::None);
    }

    #[test]
    fn the_config_file_of_the_provider_instance_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gridprov_config.json"),
            r#"{"HOSTFACTORY_API_URL": "https://api.example.com", "AWS_REGION": "us-west-2",
                "HOSTFACTORY_CALL_TIMEOUTS": {"requestMachines": 90}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("awsprov_config.json"), r#"{"HOSTFACTORY_API_URL": "https://wrong"}"#).unwrap();
        let confdir = dir.path().to_str().unwrap();
        let vars = [("HF_PROVIDER_CONFDIR", confdir), ("HF_PROVIDER_NAME", "grid"), ("HF_PROVIDER_ACTION_TIMEOUT", "60")];
        let s = load(Call::RequestMachines, &vars).unwrap();
        assert_eq!(s.api_url, "https://api.example.com");
        assert_eq!(s.region.as_deref(), Some("us-west-2"));
        assert_eq!(s.timeout, Duration::from_secs(55), "capped below HF_PROVIDER_ACTION_TIMEOUT");
        assert_eq!(s.provider.as_deref(), Some("grid"));
        let other = load(Call::GetRequestStatus, &vars).unwrap();
        assert_eq!(other.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        let fallback = load(Call::GetRequestStatus, &[("HF_PROVIDER_CONFDIR", confdir), ("HF_PROVIDER_NAME", "x")]).unwrap();
        assert_eq!(fallback.api_url, "https://wrong", "awsprov_config.json is the fallback");
    }

    #[test]
    fn bad_settings_are_named() {
        for (vars, name) in [
            (vec![], "HOSTFACTORY_API_URL"),
            (vec![("HOSTFACTORY_API_URL", "ftp://x")], "HOSTFACTORY_API_URL"),
            (vec![("HOSTFACTORY_API_URL", "https://x"), ("HOSTFACTORY_AUTH", "basic")], "HOSTFACTORY_AUTH"),
            (vec![("HOSTFACTORY_API_URL", "https://x"), ("HOSTFACTORY_TIMEOUT_SECS", "0")], "HOSTFACTORY_TIMEOUT_SECS"),
        ] {
            let err = load(Call::GetAvailableTemplates, &vars).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn hosts_are_read_from_urls() {
        assert!(is_loopback("http://localhost:8080/x"));
        assert!(is_loopback("http://[::1]:8080"));
        assert!(!is_loopback("https://127.example.com"));
        assert_eq!(region_from_host("https://a.execute-api.ap-south-1.amazonaws.com:443/p").as_deref(), Some("ap-south-1"));
        assert_eq!(region_from_host("https://api.example.com"), None);
    }
}
