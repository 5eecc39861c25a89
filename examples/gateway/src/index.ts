/**
 * The example gateway as a deployable Worker: the ledger through a service binding (LEDGER, the
 * ledger's LedgerService entrypoint), the provider through a guarded fetch to its base URL, and
 * the callers' keys from GATEWAY_KEYS (a JSON list of `{sha256_hex, account_id, role}`, see
 * keys.ts; make a key with `newGatewayKey`). A deployment that keeps its keys in D1 or KV passes
 * its own `GatewayKeyStore` instead.
 *
 * Secrets: PROVIDER_API_KEY goes only into the provider's Authorization header. It is never
 * logged, and neither is a caller's key: the gateway's log lines carry ids and codes only, and a
 * provider error is answered without its message.
 */
import { guardedFetch } from "../../../src/security/url-guard";
import type { LedgerService } from "../../../src/service";
import { createGateway, type Gateway } from "./gateway";
import { keyStoreFromConfig } from "./keys";

interface GatewayEnv {
  LEDGER: Service<LedgerService>;
  /** JSON list of `{sha256_hex, account_id, role}`; hashes only, but keep it a secret all the same. */
  GATEWAY_KEYS: string;
  PROVIDER_BASE_URL: string;
  PROVIDER_API_KEY: string;
  PROVIDER_NAME: string;
}

/**
 * One gateway per isolate and configuration: the key list is parsed once, and `stats()` counts
 * across the isolate's requests rather than one request's.
 */
const gateways = new WeakMap<GatewayEnv, Gateway>();

function gatewayFor(env: GatewayEnv): Gateway {
  let gateway = gateways.get(env);
  if (gateway === undefined) {
    gateway = createGateway({
      ledger: env.LEDGER,
      keys: keyStoreFromConfig(env.GATEWAY_KEYS),
      provider: (upstream) =>
        guardedFetch(new URL("/v1/chat/completions", env.PROVIDER_BASE_URL).toString(), {
          method: upstream.method,
          headers: { "content-type": "application/json", authorization: `Bearer ${env.PROVIDER_API_KEY}` },
          body: upstream.body,
          signal: upstream.signal,
        }),
      providerName: env.PROVIDER_NAME,
      serviceId: "chat",
      reservationTtlSeconds: 300,
      providerIdleTimeoutMs: 30_000,
    });
    gateways.set(env, gateway);
  }
  return gateway;
}

export default {
  async fetch(request, env, ctx) {
    let gateway: Gateway;
    try {
      gateway = gatewayFor(env);
    } catch (error) {
      // A key list that cannot be read refuses every request: a gateway that cannot tell its
      // callers apart must not serve. The error names the problem, never the list.
      console.log(JSON.stringify({ event: "gateway_misconfigured", error: String((error as Error).message) }));
      return Response.json(
        { error: { code: "gateway_misconfigured", message: "The gateway is not configured." } },
        {
          status: 503,
        },
      );
    }
    return gateway.fetch(request, ctx);
  },
} satisfies ExportedHandler<GatewayEnv>;
