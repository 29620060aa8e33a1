//! The OpenAPI 3 document, generated from the handlers' annotations and the wire types.

use std::sync::OnceLock;

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Peyvand client API", description = "The client API of a Peyvand messenger server. Errors are `{\"error\": {\"code\", \"message\"}}` with a stable code."),
    paths(
        routes::request_code, routes::sign_in, routes::sign_out,
        routes::get_me, routes::patch_me, routes::delete_me, routes::put_pin, routes::delete_pin,
        routes::get_settings, routes::patch_settings, routes::list_devices, routes::revoke_device, routes::revoke_all_devices,
        routes::get_user, routes::report_user, routes::resolve_user, routes::search_users,
        routes::import_contacts, routes::list_contacts, routes::remove_contact,
        routes::list_blocks, routes::block_user, routes::unblock_user,
        routes::list_chats, routes::open_direct, routes::get_chat, routes::history, routes::send_message,
        routes::get_message, routes::edit_message, routes::delete_message, routes::set_reaction, routes::remove_reaction,
        routes::mark_read, routes::mark_delivered, routes::typing, routes::search,
        routes::sync_state, routes::poll_updates, routes::updates_ws, routes::interconnect_lookup,
        routes::upload_options, routes::create_upload, routes::upload_head, routes::upload_patch, routes::upload_delete,
        routes::get_media_item, routes::get_media_bytes, routes::get_message_media, routes::get_message_thumbnail,
        routes::get_media_links, routes::get_linked_file,
    ),
    components(schemas(peyvand_api::ErrorCode, peyvand_api::Update, peyvand_api::Event, peyvand_api::StreamFrame, peyvand_api::ClientFrame)),
    modifiers(&BearerAuth, &CommonResponses)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The answers every operation can give besides its own, added where an operation does not
/// list them already: 400 when it takes parameters or a body (a malformed one is refused
/// before the handler runs), 401 when it needs a session, 404 when its path names something,
/// and 503 when the storage cannot be reached. A `HEAD` answer has no body, so there they are
/// statuses only.
struct CommonResponses;

impl CommonResponses {
    fn add(operation: &mut Operation, status: &str, description: &str, bodiless: bool) {
        let mut response = ResponseBuilder::new().description(description);
        if !bodiless {
            let error = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            response = response.content("application/json", error);
        }
        operation.responses.responses.entry(status.to_owned()).or_insert(RefOr::T(response.build()));
    }

    fn complete(operation: &mut Operation, bodiless: bool) {
        let parameters = operation.parameters.as_deref().unwrap_or_default();
        let in_path = parameters.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path));
        if !parameters.is_empty() || operation.request_body.is_some() {
            Self::add(operation, "400", "bad_request: a parameter or the body is malformed", bodiless);
        }
        if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
            Self::add(
                operation,
                "401",
                "unauthorized: no session token, or an unknown, revoked or expired one",
                bodiless,
            );
        }
        if in_path {
            Self::add(operation, "404", "not_found: what the path names does not exist or is not yours", bodiless);
        }
        Self::add(operation, "503", "unavailable: the storage cannot be reached; try again", bodiless);
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                Self::complete(operation, false);
            }
            for operation in [&mut item.head, &mut item.options].into_iter().flatten() {
                Self::complete(operation, true);
            }
        }
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operations of a path, each with its method.
    fn operations(item: &utoipa::openapi::PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
        [
            ("get", &item.get),
            ("post", &item.post),
            ("patch", &item.patch),
            ("put", &item.put),
            ("delete", &item.delete),
            ("head", &item.head),
            ("options", &item.options),
        ]
        .into_iter()
        .filter_map(|(method, operation)| operation.as_ref().map(|operation| (method, operation)))
    }

    #[test]
    fn every_operation_documents_the_errors_it_can_give() {
        let document = document();
        let mut missing = Vec::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in operations(item) {
                let has = |status: &str| operation.responses.responses.contains_key(status);
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                if secured && !has("401") {
                    missing.push(format!("{method} {path}: 401"));
                }
                if path.contains('{') && !has("404") {
                    missing.push(format!("{method} {path}: 404"));
                }
                if (operation.request_body.is_some() || path.contains('{')) && !has("400") {
                    missing.push(format!("{method} {path}: 400"));
                }
            }
        }
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn rate_limited_operations_document_429() {
        let document = document();
        let limited = [
            ("/v1/auth/code", "post"),
            ("/v1/auth/sign-in", "post"),
            ("/v1/me/pin", "put"),
            ("/v1/me/pin", "delete"),
            ("/v1/users/resolve", "get"),
            ("/v1/uploads", "post"),
        ];
        for (path, method) in limited {
            let item = document.paths.paths.get(path).unwrap_or_else(|| panic!("{path} is missing"));
            let (_, operation) =
                operations(item).find(|(m, _)| *m == method).unwrap_or_else(|| panic!("{method} {path} is missing"));
            assert!(operation.responses.responses.contains_key("429"), "{method} {path} does not list 429");
        }
    }
}
