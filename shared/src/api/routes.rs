//! The one table of routes: the routers are built from it, the metrics name calls after it, and
//! a test holds `openapi/hostfactory.yaml` to it, so the document cannot drift from the code.

use axum::routing::{MethodFilter, MethodRouter, on};
use http::Method;

use super::{Group, machines, requests, templates};
use crate::app::AppState;

pub struct Route {
    pub method: Method,
    /// axum path syntax, which is also OpenAPI's (`/api/v1/templates/{id}`).
    pub path: &'static str,
    /// The OpenAPI `operationId`; the HostFactory call name where there is one. It is also the
    /// `Operation` dimension of the call's metrics.
    pub operation: &'static str,
    /// The function serving it; `None`: every function.
    pub group: Option<Group>,
    handler: fn() -> MethodRouter<AppState>,
}

impl Route {
    pub fn method_router(&self) -> MethodRouter<AppState> {
        (self.handler)()
    }
}

macro_rules! route {
    ($method:ident, $path:literal, $operation:literal, $group:expr, $handler:path) => {
        Route {
            method: Method::$method,
            path: $path,
            operation: $operation,
            group: $group,
            handler: || on(MethodFilter::$method, $handler),
        }
    };
}

const T: Option<Group> = Some(Group::Templates);
const R: Option<Group> = Some(Group::Requests);
const M: Option<Group> = Some(Group::Machines);

pub static ROUTES: &[Route] = &[
    route!(GET, "/api/v1/templates", "getAvailableTemplates", T, templates::get_available_templates),
    route!(POST, "/api/v1/templates/validate", "validateTemplates", T, templates::validate),
    route!(GET, "/api/v1/templates/cache", "getTemplateCache", T, templates::cache_stats),
    route!(GET, "/api/v1/templates/{id}", "getTemplate", T, templates::get_template),
    route!(PUT, "/api/v1/templates/{id}", "putTemplate", T, templates::put_template),
    route!(DELETE, "/api/v1/templates/{id}", "deleteTemplate", T, templates::delete_template),
    route!(POST, "/api/v1/requests", "requestMachines", R, requests::request_machines),
    route!(POST, "/api/v1/requests/status", "getRequestStatus", R, requests::get_request_status),
    route!(POST, "/api/v1/machines/return", "requestReturnMachines", M, machines::request_return_machines),
    route!(POST, "/api/v1/machines/return-requests", "getReturnRequests", M, machines::get_return_requests),
    route!(GET, "/api/v1/machines", "listMachines", M, machines::list_machines),
    route!(GET, "/api/v1/machines/{id}", "getMachine", M, machines::get_machine),
    route!(POST, "/api/v1/machines/{id}/{action}", "machineAction", M, machines::machine_action),
    route!(GET, "/api/v1/health", "health", None, super::health),
    route!(GET, "/api/v1/openapi.json", "getOpenApi", None, super::openapi::document),
];

/// The route a request matched (by its matched path and method).
pub fn find(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.method == *method && route.path == path)
}
