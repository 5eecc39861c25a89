/**
 * Response conformance: every response that a test receives through `api()` is checked against
 * the Worker's own OpenAPI document (GET /openapi.json), so the document cannot drift from what
 * the API returns (issue 10).
 *
 * `checkResponse` finds the documented operation for the concrete method and path, asserts that
 * the status and media type are declared for it, and validates the body against the declared
 * schema with the small JSON Schema validator below. It runs inside workerd, where code
 * generation (`eval`, `new Function`) is forbidden, hence no ajv.
 *
 * Supported keywords (anything else that constrains is reported as unsupported rather than
 * silently ignored): $ref (local JSON pointers), type (a name or an array of names, incl.
 * "null" and "integer"), enum, const, properties, required, additionalProperties,
 * minProperties, maxProperties, propertyNames, items (one schema), prefixItems, minItems,
 * maxItems, uniqueItems, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
 * minLength, maxLength, pattern, anyOf, oneOf, allOf, not, and boolean schemas. Annotations
 * (description, example(s), format, title, default, deprecated, readOnly, writeOnly,
 * discriminator, $comment, x-*) are ignored.
 */
import { exports } from "cloudflare:workers";

/**
 * true: a non-conforming response throws, failing the test that made the request.
 * false: it is only reported with console.warn (prefix "[conformance]"), so a suite with known
 * drift stays green while the schemas are being fixed.
 */
export const CONFORMANCE_STRICT = true;

export interface Mismatch {
  /** JSON pointer into the response body ("" is the body itself). */
  pointer: string;
  /** JSON pointer into the OpenAPI document of the keyword that failed. */
  schemaPath: string;
  message: string;
}

// biome-ignore lint/suspicious/noExplicitAny: the document is walked generically
type Json = any;
export type OpenApiDocument = {
  paths: Record<string, Record<string, Json>>;
  components?: { schemas?: Record<string, Json> };
};

let cached: Promise<OpenApiDocument> | undefined;

/** The Worker's OpenAPI document, fetched once per test file (a failed fetch is retried). */
export function openApiDocument(): Promise<OpenApiDocument> {
  cached ??= (async () => {
    const response = await exports.default.fetch("http://ledger.test/openapi.json");
    if (response.status !== 200) throw new Error(`GET /openapi.json answered ${response.status}`);
    return (await response.json()) as OpenApiDocument;
  })();
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

export class ConformanceError extends Error {
  constructor(
    readonly operation: string,
    readonly mismatches: Mismatch[],
  ) {
    super(formatMismatches(operation, mismatches));
    this.name = "ConformanceError";
  }
}

export function formatMismatches(operation: string, mismatches: Mismatch[]): string {
  const lines = mismatches.map((m) => `  body${m.pointer || " (root)"}: ${m.message} [schema ${m.schemaPath}]`);
  return `${operation} does not conform to /openapi.json:\n${lines.join("\n")}`;
}

/**
 * Checks one response against the document; throws a ConformanceError listing every mismatch
 * (or, with CONFORMANCE_STRICT off, warns). Returns the mismatches.
 */
export async function checkResponse(
  method: string,
  path: string,
  status: number,
  contentType: string | null,
  body: unknown,
): Promise<Mismatch[]> {
  const doc = await openApiDocument();
  const { operation, mismatches } = conformance(doc, method, path, status, contentType, body);
  if (mismatches.length > 0) {
    const error = new ConformanceError(operation, mismatches);
    if (CONFORMANCE_STRICT) throw error;
    console.warn(`[conformance] ${error.message}`);
  }
  return mismatches;
}

/** The pure check behind `checkResponse`; `operation` names what was checked, for messages. */
export function conformance(
  doc: OpenApiDocument,
  method: string,
  path: string,
  status: number,
  contentType: string | null,
  body: unknown,
): { operation: string; mismatches: Mismatch[] } {
  const mediaType = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const concrete = path.split(/[?#]/)[0] ?? path;
  const found = findOperation(doc, method, concrete);
  const label = `${method.toUpperCase()} ${found?.template ?? concrete} -> ${status} ${mediaType || "(no content-type)"}`;
  const validator = new Validator(doc);

  if (found === undefined) {
    // No documented operation (an unknown route, or a documented path with another method):
    // the edge may still answer with a problem (404 not_found, 401 before routing), which must
    // then be a valid Problem. Anything else is an undocumented operation.
    if (mediaType === "application/problem+json" && doc.components?.schemas?.Problem !== undefined) {
      const mismatches = validator.validate({ $ref: "#/components/schemas/Problem" }, body, "#");
      return { operation: label, mismatches: [...mismatches, ...problemStatus(body, status)] };
    }
    return {
      operation: label,
      mismatches: [
        {
          pointer: "",
          schemaPath: "#/paths",
          message: `no operation ${method.toUpperCase()} ${concrete} is documented`,
        },
      ],
    };
  }

  const responsesPath = `#/paths/${pointerToken(found.template)}/${method.toLowerCase()}/responses`;
  const responses: Record<string, Json> = found.operation.responses ?? {};
  const key = [String(status), `${String(status)[0]}XX`, "default"].find((k) => responses[k] !== undefined);
  if (key === undefined) {
    return {
      operation: label,
      mismatches: [
        {
          pointer: "",
          schemaPath: responsesPath,
          message: `status ${status} is not declared (declared: ${Object.keys(responses).join(", ")})`,
        },
      ],
    };
  }
  const response = validator.deref(responses[key]);
  const content: Record<string, Json> = response.content ?? {};
  const declared = content[mediaType];
  if (declared === undefined) {
    return {
      operation: label,
      mismatches: [
        {
          pointer: "",
          schemaPath: `${responsesPath}/${key}/content`,
          message: `media type "${mediaType}" is not declared for ${key} (declared: ${Object.keys(content).join(", ") || "none"})`,
        },
      ],
    };
  }
  const schemaPath = `${responsesPath}/${key}/content/${pointerToken(mediaType)}/schema`;
  const mismatches = declared.schema === undefined ? [] : validator.validate(declared.schema, body, schemaPath);
  if (mediaType === "application/problem+json") {
    mismatches.push(...problemStatus(body, status));
    // defineRoute (src/http/route.ts) names the codes that it maps to each error status in the
    // response's description, "Problem: code, code"; the code must be one of them.
    const listed = /^Problem: (.+)$/.exec(String(response.description ?? ""))?.[1];
    const code = (body as { code?: unknown } | null)?.code;
    if (listed !== undefined && typeof code === "string") {
      const codes = listed.split(", ");
      if (!codes.includes(code)) {
        mismatches.push({
          pointer: "/code",
          schemaPath: `${responsesPath}/${key}/description`,
          message: `problem code "${code}" is not one declared for ${key} (${codes.join(", ")})`,
        });
      }
    }
  }
  return { operation: label, mismatches };
}

/** RFC 9457: the problem's `status` member, when present, is the response's status. */
function problemStatus(body: unknown, status: number): Mismatch[] {
  const member = (body as { status?: unknown } | null)?.status;
  if (member === undefined || member === status) return [];
  return [{ pointer: "/status", schemaPath: "RFC 9457", message: `problem status ${String(member)} ≠ HTTP ${status}` }];
}

/**
 * The documented operation for a concrete path: templates (`{account_id}`) match one non-empty
 * segment; when several paths match, the most literal wins, compared segment by segment from
 * the left (`/events/export` beats `/events/{x}`).
 */
export function findOperation(
  doc: OpenApiDocument,
  method: string,
  path: string,
): { template: string; operation: Json } | undefined {
  const segments = path.split("/");
  let best: { template: string; operation: Json; score: boolean[] } | undefined;
  for (const [template, item] of Object.entries(doc.paths)) {
    const operation = item[method.toLowerCase()];
    if (operation === undefined) continue;
    const parts = template.split("/");
    if (parts.length !== segments.length) continue;
    const score: boolean[] = [];
    let matches = true;
    for (const [i, part] of parts.entries()) {
      const segment = segments[i] ?? "";
      if (/^\{[^}]+\}$/.test(part)) {
        if (segment === "") matches = false;
        score.push(false);
      } else {
        if (part !== segment) matches = false;
        score.push(true);
      }
      if (!matches) break;
    }
    if (matches && (best === undefined || moreLiteral(score, best.score))) best = { template, operation, score };
  }
  return best === undefined ? undefined : { template: best.template, operation: best.operation };
}

function moreLiteral(a: boolean[], b: boolean[]): boolean {
  for (const [i, literal] of a.entries()) if (literal !== b[i]) return literal;
  return false;
}

const pointerToken = (token: string) => token.replaceAll("~", "~0").replaceAll("/", "~1");

// ------------------------------------------------------------------ the validator

const ANNOTATIONS = new Set([
  "description",
  "example",
  "examples",
  "format",
  "title",
  "default",
  "deprecated",
  "readOnly",
  "writeOnly",
  "discriminator",
  "externalDocs",
  "xml",
  "$comment",
  "$schema",
  "$id",
]);

const KEYWORDS = new Set([
  "$ref",
  "type",
  "enum",
  "const",
  "properties",
  "required",
  "additionalProperties",
  "minProperties",
  "maxProperties",
  "propertyNames",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "uniqueItems",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "minLength",
  "maxLength",
  "pattern",
  "anyOf",
  "oneOf",
  "allOf",
  "not",
]);

/**
 * What a schema said about an object instance's members, gathered across $ref, allOf and the
 * matching anyOf/oneOf branches (the way JSON Schema's `unevaluatedProperties` works).
 */
interface Evaluated {
  /** Member names that some `properties` declared. */
  names: Set<string>;
  /** Some schema node allowed members beyond its `properties` (additionalProperties not false). */
  open: boolean;
  /** Some schema node described an object's members (`properties`, or type "object"). */
  shaped: boolean;
  /** Where those nodes are in the document, for messages. */
  where: Set<string>;
}

const none = (): Evaluated => ({ names: new Set(), open: false, shaped: false, where: new Set() });

function merge(into: Evaluated, from: Evaluated): void {
  for (const name of from.names) into.names.add(name);
  into.open ||= from.open;
  into.shaped ||= from.shaped;
  for (const where of from.where) into.where.add(where);
}

/**
 * A JSON Schema (2020-12 subset) validator with one deliberate difference: objects are CLOSED.
 *
 * The response schemas are generated from zod objects that strip unknown keys when parsing, so
 * zod-openapi emits them without `additionalProperties`, which in JSON Schema means "anything
 * else is allowed". Read that way, a handler could add, rename or leak a field and every check
 * would still pass: exactly the drift this checker exists to catch. So a member of a response
 * object that no schema at its location declares (through `properties`, across $ref, allOf and
 * the matching anyOf/oneOf branches) is a mismatch, unless one of those schemas explicitly
 * allows more: `additionalProperties: {}` / `true` / a schema (zod's passthrough objects and
 * records, e.g. Problem's extension members, Event's type-specific fields, Metadata).
 * An explicit `additionalProperties` is otherwise applied as JSON Schema says, per node.
 */
export class Validator {
  private readonly patterns = new Map<string, RegExp>();

  constructor(private readonly doc: Json) {}

  /** Every mismatch of `value` against `schema`; `schemaPath` locates the schema in the document. */
  validate(schema: Json, value: unknown, schemaPath = "#"): Mismatch[] {
    const out: Mismatch[] = [];
    this.closed(schema, value, "", schemaPath, out);
    return out;
  }

  /** Follows $ref chains of a non-schema object (a response), for reading. */
  deref(node: Json): Json {
    let current = node;
    for (let i = 0; i < 32 && current !== null && typeof current === "object" && "$ref" in current; i += 1) {
      current = this.resolve(current.$ref).target;
    }
    return current;
  }

  /** Validates one instance location, then applies the closed-object rule to it. */
  private closed(schema: Json, value: unknown, pointer: string, schemaPath: string, out: Mismatch[]): void {
    const evaluated = this.check(schema, value, pointer, schemaPath, out);
    if (!isObject(value) || !evaluated.shaped || evaluated.open) return;
    for (const name of Object.keys(value)) {
      if (!evaluated.names.has(name)) {
        out.push({
          pointer: `${pointer}/${pointerToken(name)}`,
          schemaPath: [...evaluated.where].join(" + ") || schemaPath,
          message: `property "${name}" (${describe(value[name])}) is not declared by the schema (objects are closed unless additionalProperties allows more)`,
        });
      }
    }
  }

  private resolve(ref: unknown): { target: Json; path: string } {
    if (typeof ref !== "string" || !ref.startsWith("#")) throw new Error(`unsupported $ref ${String(ref)}`);
    let target: Json = this.doc;
    for (const raw of ref.slice(1).split("/").slice(1)) {
      const token = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
      target = target?.[token];
    }
    if (target === undefined) throw new Error(`unresolvable $ref ${ref}`);
    return { target, path: ref };
  }

  /** Validates without the closed-object rule at this location; returns what it evaluated. */
  private check(schema: Json, value: unknown, pointer: string, at: string, out: Mismatch[]): Evaluated {
    const evaluated = none();
    if (schema === true) {
      evaluated.open = true;
      return evaluated;
    }
    if (schema === false) {
      out.push({ pointer, schemaPath: at, message: "no value is allowed here (schema false)" });
      return evaluated;
    }
    if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
      out.push({ pointer, schemaPath: at, message: "the schema is not an object or a boolean" });
      return evaluated;
    }
    const keys = Object.keys(schema);
    for (const key of keys) {
      if (!KEYWORDS.has(key) && !ANNOTATIONS.has(key) && !key.startsWith("x-")) {
        out.push({ pointer, schemaPath: `${at}/${pointerToken(key)}`, message: `unsupported schema keyword "${key}"` });
      }
    }
    // A schema with no assertions ({} or annotations only) accepts any value, members included.
    if (!keys.some((key) => KEYWORDS.has(key))) {
      evaluated.open = true;
      return evaluated;
    }

    if (schema.$ref !== undefined) {
      let resolved: { target: Json; path: string };
      try {
        resolved = this.resolve(schema.$ref);
      } catch (error) {
        out.push({ pointer, schemaPath: `${at}/$ref`, message: (error as Error).message });
        return evaluated;
      }
      merge(evaluated, this.check(resolved.target, value, pointer, resolved.path, out));
    }

    if (schema.type !== undefined) {
      const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
      if (!types.some((type) => hasType(value, type))) {
        out.push({
          pointer,
          schemaPath: `${at}/type`,
          message: `expected ${types.join(" or ")}, got ${describe(value)}`,
        });
        return evaluated; // the other keywords would only repeat the type error
      }
      if (types.includes("object")) {
        evaluated.shaped = true;
        evaluated.where.add(at);
      }
    }
    if (schema.enum !== undefined && !(schema.enum as unknown[]).some((option) => equal(option, value))) {
      out.push({
        pointer,
        schemaPath: `${at}/enum`,
        message: `${describe(value)} is not one of ${JSON.stringify(schema.enum)}`,
      });
    }
    if ("const" in schema && !equal(schema.const, value)) {
      out.push({
        pointer,
        schemaPath: `${at}/const`,
        message: `${describe(value)} is not ${JSON.stringify(schema.const)}`,
      });
    }

    if (typeof value === "number") this.numeric(schema, value, pointer, at, out);
    if (typeof value === "string") this.text(schema, value, pointer, at, out);
    if (Array.isArray(value)) this.array(schema, value, pointer, at, out);
    if (isObject(value)) this.object(schema, value, pointer, at, out, evaluated);

    if (schema.allOf !== undefined) {
      for (const [i, branch] of (schema.allOf as Json[]).entries()) {
        merge(evaluated, this.check(branch, value, pointer, `${at}/allOf/${i}`, out));
      }
    }
    for (const keyword of ["anyOf", "oneOf"] as const) {
      if (schema[keyword] === undefined) continue;
      const branches = (schema[keyword] as Json[]).map((branch, i) => {
        const errors: Mismatch[] = [];
        const branchEvaluated = this.check(branch, value, pointer, `${at}/${keyword}/${i}`, errors);
        return { i, errors, evaluated: branchEvaluated };
      });
      let passing = branches.filter((b) => b.errors.length === 0);
      // With closed objects, a branch whose members do not cover the value's is a worse fit:
      // prefer the branches that fit exactly (this also settles oneOf between look-alikes).
      const fitting = passing.filter((b) => fits(value, evaluated, b.evaluated));
      if (fitting.length > 0) passing = fitting;
      if (passing.length === 0) {
        const reasons = branches.map((b) => `#${b.i}: ${b.errors[0]?.message ?? "?"}`).join("; ");
        out.push({ pointer, schemaPath: `${at}/${keyword}`, message: `matches no ${keyword} branch (${reasons})` });
      } else if (keyword === "oneOf" && passing.length > 1) {
        out.push({
          pointer,
          schemaPath: `${at}/oneOf`,
          message: `matches ${passing.length} oneOf branches (${passing.map((b) => b.i).join(", ")}), not exactly one`,
        });
      }
      for (const b of passing) merge(evaluated, b.evaluated);
    }
    if (schema.not !== undefined) {
      const errors: Mismatch[] = [];
      this.check(schema.not, value, pointer, `${at}/not`, errors);
      if (errors.length === 0) out.push({ pointer, schemaPath: `${at}/not`, message: "matches the `not` schema" });
    }
    return evaluated;
  }

  private numeric(schema: Json, value: number, pointer: string, at: string, out: Mismatch[]): void {
    const fail = (keyword: string, message: string) =>
      out.push({ pointer, schemaPath: `${at}/${keyword}`, message: `${value} ${message}` });
    if (typeof schema.minimum === "number" && value < schema.minimum) fail("minimum", `< minimum ${schema.minimum}`);
    if (typeof schema.maximum === "number" && value > schema.maximum) fail("maximum", `> maximum ${schema.maximum}`);
    if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum) {
      fail("exclusiveMinimum", `<= exclusiveMinimum ${schema.exclusiveMinimum}`);
    }
    if (typeof schema.exclusiveMaximum === "number" && value >= schema.exclusiveMaximum) {
      fail("exclusiveMaximum", `>= exclusiveMaximum ${schema.exclusiveMaximum}`);
    }
    if (typeof schema.multipleOf === "number" && !Number.isInteger(value / schema.multipleOf)) {
      fail("multipleOf", `is not a multiple of ${schema.multipleOf}`);
    }
  }

  private text(schema: Json, value: string, pointer: string, at: string, out: Mismatch[]): void {
    const length = [...value].length; // code points, as JSON Schema counts
    if (typeof schema.minLength === "number" && length < schema.minLength) {
      out.push({ pointer, schemaPath: `${at}/minLength`, message: `length ${length} < minLength ${schema.minLength}` });
    }
    if (typeof schema.maxLength === "number" && length > schema.maxLength) {
      out.push({ pointer, schemaPath: `${at}/maxLength`, message: `length ${length} > maxLength ${schema.maxLength}` });
    }
    if (typeof schema.pattern === "string") {
      let pattern = this.patterns.get(schema.pattern);
      if (pattern === undefined) {
        pattern = new RegExp(schema.pattern, "u");
        this.patterns.set(schema.pattern, pattern);
      }
      if (!pattern.test(value)) {
        out.push({
          pointer,
          schemaPath: `${at}/pattern`,
          message: `${JSON.stringify(value)} does not match ${schema.pattern}`,
        });
      }
    }
  }

  private array(schema: Json, value: unknown[], pointer: string, at: string, out: Mismatch[]): void {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) {
      out.push({
        pointer,
        schemaPath: `${at}/minItems`,
        message: `${value.length} items < minItems ${schema.minItems}`,
      });
    }
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems) {
      out.push({
        pointer,
        schemaPath: `${at}/maxItems`,
        message: `${value.length} items > maxItems ${schema.maxItems}`,
      });
    }
    if (schema.uniqueItems === true) {
      const seen = new Set(value.map((item) => stable(item)));
      if (seen.size !== value.length) out.push({ pointer, schemaPath: `${at}/uniqueItems`, message: "items repeat" });
    }
    const prefix: Json[] = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
    for (const [i, item] of value.entries()) {
      if (i < prefix.length) this.closed(prefix[i], item, `${pointer}/${i}`, `${at}/prefixItems/${i}`, out);
      else if (schema.items !== undefined) this.closed(schema.items, item, `${pointer}/${i}`, `${at}/items`, out);
    }
  }

  private object(
    schema: Json,
    value: Record<string, unknown>,
    pointer: string,
    at: string,
    out: Mismatch[],
    evaluated: Evaluated,
  ): void {
    const count = Object.keys(value).length;
    if (typeof schema.minProperties === "number" && count < schema.minProperties) {
      out.push({ pointer, schemaPath: `${at}/minProperties`, message: `${count} members < ${schema.minProperties}` });
    }
    if (typeof schema.maxProperties === "number" && count > schema.maxProperties) {
      out.push({ pointer, schemaPath: `${at}/maxProperties`, message: `${count} members > ${schema.maxProperties}` });
    }
    for (const name of (schema.required as string[] | undefined) ?? []) {
      if (!Object.hasOwn(value, name)) {
        out.push({ pointer, schemaPath: `${at}/required`, message: `required property "${name}" is missing` });
      }
    }
    const properties: Record<string, Json> = schema.properties ?? {};
    if (schema.properties !== undefined) {
      evaluated.shaped = true;
      evaluated.where.add(at);
    }
    for (const [name, member] of Object.entries(value)) {
      const memberPointer = `${pointer}/${pointerToken(name)}`;
      if (schema.propertyNames !== undefined) {
        this.closed(schema.propertyNames, name, memberPointer, `${at}/propertyNames`, out);
      }
      if (Object.hasOwn(properties, name)) {
        evaluated.names.add(name);
        this.closed(properties[name], member, memberPointer, `${at}/properties/${pointerToken(name)}`, out);
      } else if (schema.additionalProperties === false) {
        out.push({
          pointer: memberPointer,
          schemaPath: `${at}/additionalProperties`,
          message: `property "${name}" is not allowed (additionalProperties: false)`,
        });
      } else if (schema.additionalProperties !== undefined) {
        this.closed(schema.additionalProperties, member, memberPointer, `${at}/additionalProperties`, out);
      }
    }
    if (schema.additionalProperties !== undefined && schema.additionalProperties !== false) evaluated.open = true;
  }
}

/** Whether a branch's members, with those already evaluated beside it, cover an object value's. */
function fits(value: unknown, beside: Evaluated, branch: Evaluated): boolean {
  if (!isObject(value) || !branch.shaped || branch.open || beside.open) return true;
  return Object.keys(value).every((name) => branch.names.has(name) || beside.names.has(name));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case "null":
      return value === null;
    case "boolean":
      return typeof value === "boolean";
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "array":
      return Array.isArray(value);
    case "object":
      return isObject(value);
    default:
      return false;
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  const type = Array.isArray(value) ? "array" : typeof value;
  const shown = JSON.stringify(value) ?? String(value);
  return type === "object" || type === "array"
    ? type
    : `${type} ${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown}`;
}

/** JSON text with sorted keys, for equality of JSON values. */
function stable(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stable).join(",")}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${stable(value[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "undefined";
}

const equal = (a: unknown, b: unknown) => stable(a) === stable(b);
