/**
 * The one validation path: a zod schema checks a value, and every failing field becomes a
 * `FieldError` named by where it came from (HTTP: "body.amount", "path.account_id"; the service
 * binding: "input.amount", "account_id").
 */
import type { z } from "@hono/zod-openapi";
import type { FieldError } from "./problems";

export function validate<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: string,
  errors: FieldError[],
): z.infer<S> | undefined {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    const path = issue.path.map(String).join(".");
    errors.push({ field: where === "" ? path : path === "" ? where : `${where}.${path}`, message: issue.message });
  }
  return undefined;
}
