//! Schemathesis against the real `hostfactory serve`: every operation of the OpenAPI document
//! the server publishes, over 1,000 generated cases (positive and negative, stateful sequences),
//! with no 5xx, no undocumented status, no response outside its schema or headers, valid input
//! accepted and invalid input rejected. The templates launch on moto (seeded as
//! infra/scripts/serve seeds it, with a small maxNumber so big requests answer 422 instead of
//! making the emulator slow), in a scratch folder the template writes may change.
//! infra/scripts/soak-api runs the same with many more cases (the `HOSTFACTORY_FUZZ_*` knobs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// Per operation; with the examples, coverage and stateful phases this comes to ~1,200 cases.
const EXAMPLES_PER_OPERATION: u64 = 100;
const SEED: u64 = 20261202;
/// The run takes ~40 s on the idle 2-core machine (~90 s while other builds run); past this it
/// is stopped and fails.
const TIME_LIMIT: Duration = Duration::from_secs(240);
/// How long a time-budgeted run (the soak's) may take past its budget to shrink and report.
const REPORT_MARGIN: Duration = Duration::from_secs(300);
/// A region no other test launches in, so their reconcile passes never see these instances.
const REGION: &str = "ap-south-2";
const MAX_NUMBER: i64 = 3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The project venv's tool, which infra/scripts/test installs from infra/requirements-dev.txt.
fn venv_tool(name: &str) -> PathBuf {
    let tool = root().join(".venv/bin").join(name);
    assert!(
        tool.is_file(),
        "{} is missing: run through infra/scripts/test, which sets up .venv/ from infra/requirements-dev.txt",
        tool.display()
    );
    tool
}

/// Seeds moto with what the sample templates name and writes their launchable copies to
/// `folder`, every maxNumber set to [`MAX_NUMBER`].
fn seed_templates(endpoint: &str, folder: &Path) {
    let output = Command::new(venv_tool("python"))
        .arg(root().join("infra/scripts/seed_emulator.py"))
        .arg(root().join("infra/templates"))
        .arg(folder)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", REGION)
        .output()
        .expect("run seed_emulator.py");
    assert!(output.status.success(), "seeding failed: {}", String::from_utf8_lossy(&output.stderr));
    let file = folder.join("awsprov_templates.json");
    let mut document: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for template in document["templates"].as_array_mut().expect("templates") {
        template["maxNumber"] = MAX_NUMBER.into();
    }
    std::fs::write(&file, serde_json::to_string_pretty(&document).unwrap()).unwrap();
}

fn start_server(endpoint: &str, templates: &Path, data: &Path) -> Server {
    common::start_server(|command| {
        command
            .env("HOSTFACTORY_TEMPLATES", templates)
            .env("HOSTFACTORY_STORE", format!("sqlite:{}", data.join("store.sqlite").display()))
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", REGION)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
    })
}

/// The size of the run: the constants above, or infra/scripts/soak-api's `HOSTFACTORY_FUZZ_EXAMPLES`
/// (per operation), `HOSTFACTORY_FUZZ_SEED` and `HOSTFACTORY_FUZZ_SECS`: a time budget that
/// schemathesis fills, repeating its fuzzing and stateful phases, then reports.
struct Budget {
    examples: u64,
    seed: u64,
    seconds: Option<u64>,
}

impl Budget {
    fn from_env() -> Self {
        let knob = |name: &str, default: u64| match std::env::var(name) {
            Ok(value) => value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
            Err(_) => default,
        };
        Budget {
            examples: knob("HOSTFACTORY_FUZZ_EXAMPLES", EXAMPLES_PER_OPERATION),
            seed: knob("HOSTFACTORY_FUZZ_SEED", SEED),
            seconds: std::env::var_os("HOSTFACTORY_FUZZ_SECS").map(|_| knob("HOSTFACTORY_FUZZ_SECS", 0)),
        }
    }

    /// When the run is stopped and fails.
    fn limit(&self) -> Duration {
        self.seconds.map_or(TIME_LIMIT, |seconds| Duration::from_secs(seconds) + REPORT_MARGIN)
    }

    fn arguments(&self) -> Vec<String> {
        let mut arguments =
            vec!["--max-examples".into(), self.examples.to_string(), "--seed".into(), self.seed.to_string()];
        if let Some(seconds) = self.seconds {
            arguments.extend(["--max-time".into(), seconds.to_string()]);
        }
        arguments
    }
}

/// Runs `st run` against the served document; returns its output and JSON report.
fn run_schemathesis(base_url: &str, work: &Path, budget: &Budget) -> (String, Value) {
    let config = root().join("infra/schemathesis");
    let report = work.join("report.json");
    let log = work.join("schemathesis.log");
    let mut child = Command::new(venv_tool("st"))
        .arg("--config-file")
        .arg(config.join("schemathesis.toml"))
        .args(["run", &format!("{base_url}/api/v1/openapi.json"), "--url", base_url])
        .args(budget.arguments())
        .args(["--request-timeout", "30"])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report)
        .env("SCHEMATHESIS_HOOKS", config.join("hooks.py"))
        .env("NO_COLOR", "1")
        .current_dir(work)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > budget.limit() {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("schemathesis ran over {:?}:\n{output}", budget.limit());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let summary = output.lines().skip_while(|line| !line.contains("SUMMARY")).collect::<Vec<_>>().join("\n");
    eprintln!("{summary}\nschemathesis: {status} in {:.0?}", started.elapsed());
    assert!(status.success(), "schemathesis found failures:\n{output}");
    let report = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no JSON report ({e}):\n{output}"));
    (output, serde_json::from_str(&report).expect("the JSON report"))
}

/// Requests the server accepted for one operation, over every phase of the run.
fn accepted(report: &Value, operation: &str) -> u64 {
    let phases = report["valid_rates"][operation].as_object().map(|p| p.values().collect::<Vec<_>>());
    phases.unwrap_or_default().iter().filter_map(|phase| phase["accepted"].as_u64()).sum()
}

#[test]
fn schemathesis_finds_no_failure_in_over_a_thousand_cases() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run through infra/scripts/test (moto)");
    let work = tempfile::tempdir().unwrap();
    let templates = work.path().join("templates");
    seed_templates(&endpoint, &templates);
    let server = start_server(&endpoint, &templates, work.path());

    let base_url = format!("http://{}", server.address);
    let (output, report) = run_schemathesis(&base_url, work.path(), &Budget::from_env());
    let cases = report["test_cases"]["generated"].as_u64().unwrap_or_default();
    eprintln!("schemathesis: {cases} cases, {}", report["test_cases"]);
    assert!(cases >= 1000, "only {cases} cases ran:\n{output}");
    assert_eq!(report["failures"], serde_json::json!([]), "{output}");
    assert_eq!(report["errors"], serde_json::json!([]), "{output}");
    assert_eq!(report["operations"]["tested"], report["operations"]["total"], "every operation ran:\n{output}");
    // Valid requests reached the launch path (moto): the run did not only collect 4xx answers.
    assert!(accepted(&report, "POST /api/v1/requests") > 0, "no requestMachines call was accepted:\n{output}");
    assert!(accepted(&report, "POST /api/v1/requests/status") > 0, "no getRequestStatus was accepted:\n{output}");
}
