/**
 * The one Node API the ledger uses (synchronous SHA-256 for the hash chain, from workerd's
 * nodejs_compat). Declared here rather than pulling all of @types/node into the Worker's types.
 */
declare module "node:crypto" {
  interface Hash {
    update(data: string | Uint8Array): Hash;
    digest(encoding: "hex"): string;
  }
  export function createHash(algorithm: "sha256"): Hash;
  /** One-shot digest (Node >= 21.7; workerd's nodejs_compat has it). */
  export function hash(algorithm: "sha256", data: string, outputEncoding: "hex"): string;
}
