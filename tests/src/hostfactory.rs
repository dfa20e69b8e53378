//! HostFactory as a fault run sees it: it requests machines, polls each request to the end,
//! returns what it got (repeating a return that failed) and judges every answer: correct, or a
//! non-2xx with a `message`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::Response;
use crate::rig::{Rig, return_body};

/// Polls of one request before HostFactory stops waiting for it within a cycle.
pub const POLLS: usize = 30;
/// Tries of one return (HostFactory repeats a return that failed).
const RETURN_TRIES: usize = 5;

/// A request HostFactory still polls: a `req-` (its machines not yet taken) or a `ret-` of
/// these machines.
enum Waiting {
    Provision(String),
    Return(String, Vec<String>),
}

/// HostFactory as the run sees it: what it holds and every answer it got.
#[derive(Default)]
pub struct HostFactory {
    /// Machines given to it and not returned.
    pub held: HashSet<String>,
    /// Answers per HTTP status.
    pub statuses: BTreeMap<u16, usize>,
    /// Answers that were neither correct nor an error with a message.
    pub wrong: Vec<String>,
    pub granted: usize,
    pub returned: usize,
    /// Requests still running after [`POLLS`] polls (counted each time one is left waiting).
    pub unsettled: usize,
    /// Requests left running, polled again by [`HostFactory::settle`]: real HostFactory keeps
    /// polling a request until it is final, whatever a cycle's patience.
    waiting: Vec<Waiting>,
    /// Host names of the machines it got, to their ids (getReturnRequests names hosts).
    names: HashMap<String, String>,
}

impl HostFactory {
    /// Counts `answer`; `Some(body)` when it is a 2xx, else checks it is an error with a message.
    fn judge(&mut self, call: &str, answer: Response) -> Option<Value> {
        *self.statuses.entry(answer.status.as_u16()).or_default() += 1;
        if answer.status.is_success() {
            return Some(answer.body);
        }
        let message = answer.body["message"].as_str().unwrap_or_default();
        if answer.status.as_u16() < 400 || message.is_empty() {
            self.wrong.push(format!("{call} answered {} without a message: {}", answer.status, answer.body));
        }
        None
    }

    /// The request's answers until it leaves `running`: its last 2xx answer and whether final.
    async fn poll(&mut self, rig: &Rig, id: &str) -> (Option<Value>, bool) {
        let mut last = None;
        for _ in 0..POLLS {
            let answer = rig.post("/api/v1/requests/status", json!({"requests": [{"requestId": id}]})).await;
            if let Some(body) = self.judge("getRequestStatus", answer) {
                let request = body["requests"][0].clone();
                self.check_status(id, &request);
                let status = request["status"].clone();
                last = Some(request);
                if status != "running" {
                    return (last, true);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.unsettled += 1;
        (last, false)
    }

    fn check_status(&mut self, id: &str, request: &Value) {
        let machines = request["machines"].as_array();
        let well_formed = request["requestId"] == id
            && ["running", "complete", "complete_with_error"].contains(&request["status"].as_str().unwrap_or_default())
            && machines.is_some_and(|ms| {
                ms.iter().all(|m| {
                    m["machineId"].as_str().is_some_and(|s| s.starts_with("i-"))
                        && ["executing", "succeed", "fail"].contains(&m["result"].as_str().unwrap_or_default())
                })
            });
        if !well_formed {
            self.wrong.push(format!("getRequestStatus of {id} answered 200 with {request}"));
        }
    }

    /// One cycle: `count` machines requested, held until the request is final, then returned.
    pub async fn cycle(&mut self, rig: &Rig, count: i64) {
        let answer = rig.request(count).await;
        let Some(body) = self.judge("requestMachines", answer) else { return };
        let Some(id) = body["requestId"].as_str().filter(|id| id.starts_with("req-")) else {
            return self.wrong.push(format!("requestMachines answered 200 with {body}"));
        };
        match self.poll(rig, id).await {
            (last, true) => self.take(rig, last.as_ref()).await,
            (_, false) => self.waiting.push(Waiting::Provision(id.to_owned())),
        }
    }

    /// Takes the machines a final request reports `succeed`, then gives them back.
    async fn take(&mut self, rig: &Rig, last: Option<&Value>) {
        for machine in last.iter().flat_map(|r| r["machines"].as_array().cloned().unwrap_or_default()) {
            if let (Some(name), Some(id)) = (machine["name"].as_str(), machine["machineId"].as_str()) {
                self.names.insert(name.to_owned(), id.to_owned());
            }
        }
        let got = succeeded(last);
        self.granted += got.len();
        self.held.extend(got.iter().cloned());
        self.give_back(rig, got).await;
    }

    /// Polls again every request left running; those still running stay waiting.
    pub async fn settle(&mut self, rig: &Rig) {
        for waiting in std::mem::take(&mut self.waiting) {
            match waiting {
                Waiting::Provision(id) => match self.poll(rig, &id).await {
                    (last, true) => self.take(rig, last.as_ref()).await,
                    (_, false) => self.waiting.push(Waiting::Provision(id)),
                },
                Waiting::Return(id, machines) => self.poll_return(rig, id, machines).await,
            }
        }
    }

    /// Requests still running after [`HostFactory::settle`]: HostFactory would wait forever.
    pub fn never_final(&self) -> Vec<String> {
        let id = |w: &Waiting| match w {
            Waiting::Provision(id) | Waiting::Return(id, _) => id.clone(),
        };
        self.waiting.iter().map(|w| format!("{} never left running", id(w))).collect()
    }

    /// Returns `machines`, as HostFactory does: repeated until a return is accepted, then
    /// polled. A return `complete` gave back all of them (machines already gone may be left
    /// out, spec §2.3); one `complete_with_error` those it reports `succeed`.
    pub async fn give_back(&mut self, rig: &Rig, machines: Vec<String>) {
        if machines.is_empty() {
            return;
        }
        let body = return_body(&machines);
        for _ in 0..RETURN_TRIES {
            let answer = rig.post("/api/v1/machines/return", body.clone()).await;
            let Some(accepted) = self.judge("requestReturnMachines", answer) else { continue };
            let Some(id) = accepted["requestId"].as_str().filter(|id| id.starts_with("ret-")) else {
                return self.wrong.push(format!("requestReturnMachines answered 200 with {accepted}"));
            };
            return self.poll_return(rig, id.to_owned(), machines).await;
        }
    }

    /// Polls a return: `complete` gave back all its machines, `complete_with_error` those it
    /// reports `succeed`; still running, it waits for [`HostFactory::settle`].
    async fn poll_return(&mut self, rig: &Rig, id: String, machines: Vec<String>) {
        match self.poll(rig, &id).await {
            (Some(last), true) => {
                let gone = if last["status"] == "complete" { machines } else { succeeded(Some(&last)) };
                self.returned += gone.len();
                self.held.retain(|m| !gone.contains(m));
            }
            (_, true) => {}
            (_, false) => self.waiting.push(Waiting::Return(id, machines)),
        }
    }
}

impl HostFactory {
    /// HostFactory's housekeeping: getReturnRequests with every host it holds, and the hosts
    /// reported (the cloud took them back) returned.
    pub async fn housekeeping(&mut self, rig: &Rig) {
        let ids: HashMap<&str, &str> = self.names.iter().map(|(name, id)| (id.as_str(), name.as_str())).collect();
        let hosts: Vec<Value> = self
            .held
            .iter()
            .map(|id| match ids.get(id.as_str()) {
                Some(name) => json!({"machineId": id, "name": name}),
                None => json!({"machineId": id}),
            })
            .collect();
        let answer = rig.post("/api/v1/machines/return-requests", json!({"machines": hosts})).await;
        let Some(body) = self.judge("getReturnRequests", answer) else { return };
        let reported: Vec<String> = body["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["machine"].as_str())
            .map(|host| self.names.get(host).cloned().unwrap_or_else(|| host.to_owned()))
            .filter(|id| self.held.contains(id))
            .collect();
        self.give_back(rig, reported).await;
    }
}

/// The machines an answer reports `succeed`.
pub fn succeeded(request: Option<&Value>) -> Vec<String> {
    let machines = request.and_then(|r| r["machines"].as_array()).cloned().unwrap_or_default();
    machines.iter().filter(|m| m["result"] == "succeed").filter_map(|m| m["machineId"].as_str().map(str::to_owned)).collect()
}

