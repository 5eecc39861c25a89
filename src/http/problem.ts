/** Problems as HTTP responses: problem+json with the request id, and the code in the log line. */
import type { Context } from "hono";
import type { Problem } from "../app/problems";
import type { AppEnv } from "./context";

export function problemResponse(c: Context<AppEnv>, body: Problem, headers?: Record<string, string>): Response {
  c.get("log").error_code = body.code;
  return new Response(JSON.stringify(body), {
    status: body.status,
    headers: { "content-type": "application/problem+json", "request-id": c.get("requestId"), ...headers },
  });
}
