/**
 * The example gateway as a deployable Worker: the ledger through a service binding (LEDGER, the
 * ledger's LedgerService entrypoint) and the provider through a guarded fetch to its base URL.
 * Authentication of the gateway's own callers is out of scope for the example.
 */
import { guardedFetch } from "../../../src/security/url-guard";
import type { LedgerService } from "../../../src/service";
import { createGateway } from "./gateway";

interface GatewayEnv {
  LEDGER: Service<LedgerService>;
  PROVIDER_BASE_URL: string;
  PROVIDER_API_KEY: string;
  PROVIDER_NAME: string;
}

export default {
  async fetch(request, env, ctx) {
    const gateway = createGateway({
      ledger: env.LEDGER,
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
      providerTimeoutMs: 30_000,
    });
    return gateway.fetch(request, ctx);
  },
} satisfies ExportedHandler<GatewayEnv>;
