/**
 * Bearer authentication. For now the only credential is the ADMIN_API_KEY secret (scoped keys
 * come with the security work). The presented token is compared in constant time, through
 * SHA-256 digests so that unequal lengths do not leak either; it is never logged.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./context";
import { problem, problemResponse } from "./problem";

const encoder = new TextEncoder();

async function digest(value: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(value));
}

export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([digest(a), digest(b)]);
  return crypto.subtle.timingSafeEqual(da, db);
}

export function bearerAuth(): MiddlewareHandler<AppEnv> {
  return async function bearerAuthMiddleware(c, next) {
    const expected = c.env.ADMIN_API_KEY;
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer ([^\s]+)$/i.exec(header);
    // An unset secret must lock the API, never open it.
    if (
      expected === undefined ||
      expected.length === 0 ||
      match === null ||
      !(await constantTimeEqual(match[1] ?? "", expected))
    ) {
      return problemResponse(
        c,
        problem("unauthorized", "Send Authorization: Bearer <api key>.", { instance: c.req.path }),
        {
          "www-authenticate": 'Bearer realm="openedge-ledger"',
        },
      );
    }
    await next();
  };
}
