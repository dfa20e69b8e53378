"""Schemathesis hooks for cli/tests/schemathesis.rs and infra/scripts/soak-api: they drop the cases
whose answer openapi/hostfactory.yaml states in words that a JSON schema cannot express, and the
deletes that would empty the catalog the run launches from.

- `cache` and `validate` are routes of their own (GET /api/v1/templates/cache, POST
  /api/v1/templates/validate), so the document excludes them as template ids: a case naming
  them never reaches the template operation it was generated for.
- The X-HF-Provider-Name header names the provider instance only when ?provider= is absent, so
  with both, the header's value (valid or not) is not looked at.
- DELETE of a sample template (infra/templates): the run keeps them so that requestMachines
  launches throughout. Deletes of other ids (unknown ones, those the run PUT) still run. (With
  every template of the service's own provider instance deleted, the templates routes and
  requestMachines answer 500 "configuration error: no templates ..." - a known gap, see README.)
"""

import json
import pathlib

import schemathesis

ROUTE_NAMES = {"cache", "validate"}
PROVIDER_HEADER = "x-hf-provider-name"
SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "templates" / "awsprov_templates.json"
KEPT = {template["templateId"] for template in json.loads(SAMPLES.read_text())["templates"]}


@schemathesis.hook
def filter_case(context, case):
    template_id = (case.path_parameters or {}).get("id")
    if template_id in ROUTE_NAMES:
        return False
    if case.method.upper() == "DELETE" and template_id in KEPT:
        return False
    has_query = "provider" in (case.query or {})
    has_header = any(name.lower() == PROVIDER_HEADER for name in (case.headers or {}))
    return not (has_query and has_header)
