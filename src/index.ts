/**
 * Worker entry: the HTTP API (src/http) and the account Durable Object class, which the
 * runtime needs exported from the main module.
 */
import { createApp } from "./http/app";

export { AccountDurableObject } from "../durable-objects/account";

const app = createApp();

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<import("./env").Env>;
