// Checking form input against the API's own contract (GET /v1/openapi.json)
// before submitting, so the browser and the server apply the same rules and
// the rules are written down once, in the server's schemas.

import * as api from "./api.js";

let documentPromise = null;

export function load() {
  documentPromise ??= api.get("/v1/openapi.json").catch((err) => {
    documentPromise = null; // try again next time
    throw err;
  });
  return documentPromise;
}

function resolve(doc, schema) {
  if (schema?.$ref) return doc.components.schemas[schema.$ref.split("/").pop()];
  return schema;
}

export async function schemaOf(name) {
  const doc = await load();
  const schema = doc.components?.schemas?.[name];
  if (!schema) throw new Error(`the API's contract has no schema ${name}`);
  return { doc, schema };
}

// The reason `value` breaks the property's rules, or null. `value` is already
// typed (a number for number fields, a string for strings).
export function problem(doc, property, value) {
  const rule = resolve(doc, property);
  if (!rule) return null;
  if (rule.type === "string") {
    if (typeof value !== "string") return "expected text";
    if (rule.minLength !== undefined && value.length < rule.minLength) return `at least ${rule.minLength} characters`;
    if (rule.maxLength !== undefined && value.length > rule.maxLength) return `at most ${rule.maxLength} characters`;
    if (rule.pattern && !new RegExp(rule.pattern).test(value)) return "does not have the expected form";
    if (rule.enum && !rule.enum.includes(value)) return `one of ${rule.enum.join(", ")}`;
  }
  if (rule.type === "number" || rule.type === "integer") {
    if (typeof value !== "number" || Number.isNaN(value)) return "expected a number";
    if (rule.type === "integer" && !Number.isInteger(value)) return "expected a whole number";
    if (rule.minimum !== undefined && value < rule.minimum) return `at least ${rule.minimum}`;
    if (rule.exclusiveMinimum !== undefined && value <= rule.exclusiveMinimum) return `more than ${rule.exclusiveMinimum}`;
    if (rule.maximum !== undefined && value > rule.maximum) return `at most ${rule.maximum}`;
    if (rule.multipleOf !== undefined) {
      const steps = value / rule.multipleOf;
      if (Math.abs(steps - Math.round(steps)) > 1e-9) return `a multiple of ${rule.multipleOf}`;
    }
  }
  return null;
}

// The rules of one property as HTML attributes (min, max, step, maxlength) for
// the browser's own hints; the real check is problem().
export function attributes(doc, property) {
  const rule = resolve(doc, property) ?? {};
  const out = {};
  if (rule.minimum !== undefined) out.min = rule.minimum;
  if (rule.maximum !== undefined) out.max = rule.maximum;
  if (rule.multipleOf !== undefined) out.step = rule.multipleOf;
  else if (rule.type === "integer") out.step = 1;
  if (rule.maxLength !== undefined) out.maxlength = rule.maxLength;
  return out;
}

// The job search's keys and the job states, as the API names them (GET
// /v1/openapi.json: x-a4c-search-keys on the search, the JobStatus and JobKind
// enums with x-a4c-live and x-a4c-final), so the dashboard copies none of them.
export async function jobSyntax() {
  const doc = await load();
  const keys = doc.paths?.["/v1/jobs/search"]?.get?.["x-a4c-search-keys"];
  const status = doc.components?.schemas?.JobStatus;
  if (!keys || !status) throw new Error("the API's contract does not describe the job search");
  return {
    filterKeys: keys.filters,
    keys: keys.keys,
    statuses: status.enum,
    live: status["x-a4c-live"],
    final: status["x-a4c-final"],
    kinds: doc.components.schemas.JobKind?.enum ?? [],
  };
}
