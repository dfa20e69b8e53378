//! The five HostFactory calls and the API route each one goes to.

use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Call {
    #[value(name = "getAvailableTemplates")]
    GetAvailableTemplates,
    #[value(name = "requestMachines")]
    RequestMachines,
    #[value(name = "getRequestStatus")]
    GetRequestStatus,
    #[value(name = "requestReturnMachines")]
    RequestReturnMachines,
    #[value(name = "getReturnRequests")]
    GetReturnRequests,
}

impl Call {
    pub const ALL: [Call; 5] = [
        Call::GetAvailableTemplates,
        Call::RequestMachines,
        Call::GetRequestStatus,
        Call::RequestReturnMachines,
        Call::GetReturnRequests,
    ];

    /// The script name HostFactory uses (`getAvailableTemplates`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Call::GetAvailableTemplates => "getAvailableTemplates",
            Call::RequestMachines => "requestMachines",
            Call::GetRequestStatus => "getRequestStatus",
            Call::RequestReturnMachines => "requestReturnMachines",
            Call::GetReturnRequests => "getReturnRequests",
        }
    }

    /// HTTP method and path of the call on the hostfactory-aws API.
    pub fn route(self) -> (Method, &'static str) {
        match self {
            Call::GetAvailableTemplates => (Method::GET, "/api/v1/templates"),
            Call::RequestMachines => (Method::POST, "/api/v1/requests"),
            Call::GetRequestStatus => (Method::POST, "/api/v1/requests/status"),
            Call::RequestReturnMachines => (Method::POST, "/api/v1/machines/return"),
            Call::GetReturnRequests => (Method::POST, "/api/v1/machines/return-requests"),
        }
    }

    /// Whether the call may be sent again after the server may have seen it: reads only.
    /// requestMachines and requestReturnMachines act on EC2, so they are retried only when the
    /// connection failed before anything was sent (HostFactory itself retries a failed call).
    pub fn is_read_only(self) -> bool {
        matches!(self, Call::GetAvailableTemplates | Call::GetRequestStatus | Call::GetReturnRequests)
    }
}
