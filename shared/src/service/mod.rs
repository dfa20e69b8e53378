//! The use cases behind the requests and machines routes (spec §2.2–2.5), independent of HTTP:
//! each takes the application state, the caller's provider instance and the parsed input.

mod claim;
pub(crate) mod capacity;
mod discover;
mod fleets;
mod request;
mod returns;
mod shrink;
mod status;

pub use request::request_machines;
pub use returns::{get_return_requests, request_return_machines};
pub use claim::Caller;
pub use status::{get_request_status, status_of};

pub(crate) use request::machine_record;
pub(crate) use shrink::release_from_owners;
pub(crate) use status::{finish_abandoned, finish_with_error};
