"""Schemathesis hooks for cli/tests/schemathesis.rs and infra/scripts/soak-api: they drop the cases
whose answer openapi/hostfactory.yaml states in words that a JSON schema cannot express.

- `cache` and `validate` are routes of their own (GET /api/v1/templates/cache, POST
  /api/v1/templates/validate), so the document excludes them as template ids: a case naming
  them never reaches the template operation it was generated for.
- The X-HF-Provider-Name header names the provider instance only when ?provider= is absent, so
  with both, the header's value (valid or not) is not looked at.
"""

import schemathesis

ROUTE_NAMES = {"cache", "validate"}
PROVIDER_HEADER = "x-hf-provider-name"


@schemathesis.hook
def filter_case(context, case):
    if (case.path_parameters or {}).get("id") in ROUTE_NAMES:
        return False
    has_query = "provider" in (case.query or {})
    has_header = any(name.lower() == PROVIDER_HEADER for name in (case.headers or {}))
    return not (has_query and has_header)
