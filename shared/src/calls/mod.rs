//! The use cases, named after the HostFactory calls behind the templates, requests and machines
//! routes (spec §2.1–2.5), independent of HTTP: each takes the application state, the caller's
//! provider instance and the parsed input. `filling` follows the fleets and groups that fill
//! after the call, `outcome` maps EC2 states onto HostFactory's results.

mod available_templates;
mod claim;
pub(crate) mod capacity;
mod cooldowns;
mod discover;
mod filling;
pub mod lifecycle;
pub mod outcome;
mod request_machines;
pub(crate) mod return_machines;
mod return_requests;
mod shrink;
mod request_status;
pub mod template_writes;

pub use available_templates::available_templates;
pub use request_machines::request_machines;
pub use return_machines::request_return_machines;
pub use return_requests::get_return_requests;
pub use request_status::{get_request_status, refresh};

pub(crate) use request_machines::machine_record;
pub(crate) use shrink::release_from_owners;
pub(crate) use request_status::{finish_abandoned, finish_with_error};
