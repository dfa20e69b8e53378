"""Checks domain events against their JSON Schemas (tests/tests/domain_events.rs runs it).

Reads JSON Lines on stdin, each {"schema": <path of the schema file>, "detail": <event detail>};
prints every violation and exits 1 if there is any.
"""
import json
import sys

import jsonschema

violations = 0
for line in sys.stdin:
    case = json.loads(line)
    with open(case["schema"]) as schema_file:
        schema = json.load(schema_file)
    for error in jsonschema.Draft202012Validator(schema).iter_errors(case["detail"]):
        violations += 1
        print(f"{case['schema']}: {error.message}")
sys.exit(1 if violations else 0)
