/**
 * The one typed client of the account object. Its RPC methods return plain structured values,
 * so the stub's types are the object's own: callers need no casts.
 */
import type { Env } from "../env";

export function accountClient(env: Pick<Env, "ACCOUNTS">, accountId: string) {
  return env.ACCOUNTS.getByName(accountId);
}

export type AccountClient = ReturnType<typeof accountClient>;
