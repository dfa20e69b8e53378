//! HostFactory wire types: the JSON documents of the five provider calls, exactly as
//! `hostfactory-spec.md` §2 describes them.
//!
//! Input is read leniently where real traffic varies (attribute values as tuples or plain values,
//! `requests`/`machines` as an array or a single object, unknown fields ignored); output is always
//! written in the one canonical form (tuples, arrays, lower-case `launchtime`).

mod attributes;
mod available_templates;
mod input;
mod request_machines;
mod request_status;
mod returns;

pub use attributes::{Attribute, AttributeType, Attributes};
pub use available_templates::{GetAvailableTemplatesResponse, TemplateInfo};
pub use input::{one_or_many, parse_input};
pub use request_machines::{RequestAccepted, RequestMachinesInput, RequestedTemplate};
pub use request_status::{
    MachineResult, MachineStatus, RequestRef, RequestState, RequestReport, RequestStatusInput, RequestStatusResponse,
};
pub use returns::{MachineRef, ReturnMachinesInput, ReturnRequest, ReturnRequestsInput, ReturnRequestsResponse};

#[cfg(test)]
mod tests;
