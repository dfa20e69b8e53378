//! The real `hostfactory serve` process of the CLI tests, on an ephemeral port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The server process; killed when dropped.
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:<port>`, as the server printed it.
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hostfactory serve` with `configure`'s environment on 127.0.0.1:0; waits for the address
/// it prints.
pub fn start_server(configure: impl FnOnce(&mut Command)) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hostfactory"));
    command.arg("serve").env("HOSTFACTORY_LISTEN", "127.0.0.1:0").stdout(Stdio::piped());
    configure(&mut command);
    let mut child = command.spawn().expect("start hostfactory serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Server { child, address }
}
