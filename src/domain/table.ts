/**
 * The command table: every command declares, in one place, everything the ledger needs to know
 * about it (TigerBeetle's one operation enum switched in one place; Emmett's decider):
 * - `key`: the permanent idempotency key it consumes (keys.ts spells and locates it);
 * - `reads`: the reservations and charges its rules read, which the shell loads into the slice;
 * - `decide`: its rules (rules.ts);
 * - `replay`: the event that recorded its key and the fields a retry must repeat exactly;
 * - `view`: what a success answers: the operation's event rendered (views.ts), or the account;
 * - `status`: the status of a success (and of a replay, where it differs);
 * - `batchable`: whether it may appear in a batch.
 * The table is a mapped type over every command type, so a command missing from it, or
 * missing one of these facts, does not compile. The account object, the HTTP API, the service
 * binding and batches all read it; none of them names an event type.
 */
import { type Command, type CommandType, DEFAULT_GRANT, type ReserveFunds } from "./commands";
import type { LedgerEvent, LedgerEventType } from "./events";
import type { OperationKey } from "./keys";
import { assert } from "./money";
import {
  type DecideInput,
  type Decision,
  decideAdjustBalance,
  decideCaptureReservation,
  decideChargeAccount,
  decideCreditFunds,
  decideExpireReservations,
  decideExtendReservation,
  decideOpenAccount,
  decideRefundCharge,
  decideReleaseReservation,
  decideRemoveLimit,
  decideReserveFunds,
  decideSetLimit,
  decideUpdateAccount,
} from "./rules";

/** A field a retry must repeat: its name, what the retry asks, what the original recorded. */
export type ReplayField = readonly [field: string, requested: unknown, original: unknown];

export interface Reads {
  reservation_ids: readonly string[];
  charge_ids: readonly string[];
}

type EventOf<T extends LedgerEventType> = Extract<LedgerEvent, { type: T }>;

export interface CommandSpec<C extends Command> {
  key(command: C): OperationKey | null;
  reads(command: C): Reads;
  decide(command: C, input: DecideInput<C>): Decision;
  /** Null for commands without a key. The prior event is checked to be of the declared type. */
  replay: ((command: C, prior: LedgerEvent) => readonly ReplayField[]) | null;
  /** What a success answers: its event's view, the account, or every spend limit (issue 28). */
  view: "event" | "account" | "limits";
  status: { success: 200 | 201; replay: 200 | 201 };
  batchable: boolean;
}

export type CommandTable = { readonly [T in CommandType]: CommandSpec<Extract<Command, { type: T }>> };

/** Typed replay fields for the event type that recorded the key. */
function replayOf<C extends Command, T extends LedgerEventType>(
  type: T,
  fields: (command: C, prior: EventOf<T>) => readonly ReplayField[],
): (command: C, prior: LedgerEvent) => readonly ReplayField[] {
  return (command, prior) => {
    assert(prior.type === type, `the key of ${command.type} is recorded by ${type}, found ${prior.type}`);
    return fields(command, prior as EventOf<T>);
  };
}

/**
 * Replay fields that the command and its event spell alike: each compared as the retry asks it
 * and as the original recorded it.
 */
function replayAlike<C extends Command, T extends LedgerEventType>(
  type: T,
  names: readonly (keyof C & keyof EventOf<T> & string)[],
): (command: C, prior: LedgerEvent) => readonly ReplayField[] {
  return replayOf<C, T>(type, (c, prior) => names.map((name): ReplayField => [name, c[name], prior[name]]));
}

/** The common case: a success answers the command's event, and the command may be batched. */
function answersEvent<C extends Command>(spec: Omit<CommandSpec<C>, "view" | "batchable">): CommandSpec<C> {
  return { ...spec, view: "event", batchable: true };
}

const NO_READS: Reads = { reservation_ids: [], charge_ids: [] };
const reservation = (id: string): Reads => ({ reservation_ids: [id], charge_ids: [] });
/** Reservation and charge ids share a namespace (a capture is the charge `reservation_id`). */
const bothNamespaces = (id: string): Reads => ({ reservation_ids: [id], charge_ids: [id] });
const CREATED = { success: 201, replay: 201 } as const;
const OK = { success: 200, replay: 200 } as const;

export const COMMANDS: CommandTable = {
  OpenAccount: {
    key: () => ({ op: "open" }),
    reads: () => NO_READS,
    decide: decideOpenAccount,
    replay: replayAlike("AccountOpened", ["account_id", "currency", "credit_limit", "metadata"]),
    view: "event",
    status: { success: 201, replay: 200 },
    batchable: false,
  },
  UpdateAccount: {
    key: () => null,
    reads: () => NO_READS,
    decide: decideUpdateAccount,
    replay: null,
    view: "account",
    status: OK,
    batchable: true,
  },
  CreditFunds: answersEvent({
    key: (c) => ({ op: "credit", credit_id: c.credit_id }),
    reads: () => NO_READS,
    decide: decideCreditFunds,
    replay: replayOf("FundsCredited", (c, prior) => [
      ["amount", c.amount, prior.amount],
      // A credit from before lots was a paid lot that never expires: the default grant.
      ["grant", c.grant ?? DEFAULT_GRANT, prior.grant ?? DEFAULT_GRANT],
      ["reason", c.reason, prior.reason],
      ["metadata", c.metadata, prior.metadata],
    ]),
    status: CREATED,
  }),
  ReserveFunds: answersEvent({
    key: (c) => ({ op: "reserve", reservation_id: c.reservation_id }),
    // A capture becomes the charge `reservation_id`, so a reservation may not reuse a charge id.
    reads: (c) => bothNamespaces(c.reservation_id),
    decide: decideReserveFunds,
    replay: replayOf("FundsReserved", reserveReplayFields),
    status: CREATED,
  }),
  CaptureReservation: answersEvent({
    key: (c) => ({ op: "capture", reservation_id: c.reservation_id }),
    reads: (c) => reservation(c.reservation_id),
    decide: decideCaptureReservation,
    replay: replayOf("ReservationCaptured", (c, prior) => [
      ["amount", c.amount, prior.pricing === undefined ? prior.amount : null],
      ["allow_overage", c.allow_overage, prior.allow_overage],
      ["usage", c.usage, prior.usage],
      ["metadata", c.metadata, prior.metadata],
    ]),
    status: OK,
  }),
  ReleaseReservation: answersEvent({
    key: (c) => ({ op: "release", reservation_id: c.reservation_id }),
    reads: (c) => reservation(c.reservation_id),
    decide: decideReleaseReservation,
    replay: replayAlike("ReservationReleased", ["reason"]),
    status: OK,
  }),
  ExtendReservation: answersEvent({
    key: (c) =>
      c.extension_id === null ? null : { op: "extend", reservation_id: c.reservation_id, extension_id: c.extension_id },
    reads: (c) => reservation(c.reservation_id),
    decide: decideExtendReservation,
    replay: replayOf("ReservationExtended", (c, prior) => [
      ["ttl_seconds", c.ttl_seconds, prior.ttl_seconds],
      // Omitting on_expiry means "keep it", so only an explicit value can differ.
      ["on_expiry", c.on_expiry ?? prior.on_expiry, prior.on_expiry],
    ]),
    status: OK,
  }),
  ChargeAccount: answersEvent({
    key: (c) => ({ op: "charge", charge_id: c.charge_id }),
    reads: (c) => bothNamespaces(c.charge_id),
    decide: decideChargeAccount,
    replay: replayOf("AccountCharged", (c, prior) => [
      ["amount", c.amount, prior.amount],
      ["context", c.context, prior.context],
      ["project_id", c.caller?.project_id ?? null, prior.caller?.project_id ?? null],
      ["metadata", c.metadata, prior.metadata],
    ]),
    status: CREATED,
  }),
  RefundCharge: answersEvent({
    key: (c) => ({ op: "refund", refund_id: c.refund_id }),
    reads: (c) => ({ reservation_ids: [], charge_ids: [c.charge_id] }),
    decide: decideRefundCharge,
    replay: replayAlike("ChargeRefunded", ["charge_id", "amount", "reason"]),
    status: CREATED,
  }),
  AdjustBalance: answersEvent({
    key: (c) => ({ op: "adjustment", adjustment_id: c.adjustment_id }),
    reads: () => NO_READS,
    decide: decideAdjustBalance,
    replay: replayOf("BalanceAdjusted", (c, prior) => [
      ["amount", c.amount, prior.amount],
      [
        "grant",
        c.amount > 0 ? (c.grant ?? DEFAULT_GRANT) : null,
        prior.amount > 0 ? (prior.grant ?? DEFAULT_GRANT) : null,
      ],
      ["reason", c.reason, prior.reason],
    ]),
    status: CREATED,
  }),
  // A limit is set to a state (PUT): the same terms again change nothing, so need no key.
  SetLimit: {
    key: () => null,
    reads: () => NO_READS,
    decide: decideSetLimit,
    replay: null,
    view: "limits",
    status: OK,
    batchable: false,
  },
  RemoveLimit: {
    key: () => null,
    reads: () => NO_READS,
    decide: decideRemoveLimit,
    replay: null,
    view: "limits",
    status: OK,
    batchable: false,
  },
  ExpireReservations: {
    key: () => null,
    reads: (c) => ({ reservation_ids: c.reservation_ids, charge_ids: [] }),
    decide: decideExpireReservations,
    replay: null,
    view: "event",
    status: OK,
    // Settlement by time is the shell's own command, never a caller's.
    batchable: false,
  },
};

/**
 * A priced reservation is compared by what was asked (price and estimate), not by the rules
 * resolved at the time: a retry after a price change still replays the original.
 */
function reserveReplayFields(c: ReserveFunds, prior: EventOf<"FundsReserved">): readonly ReplayField[] {
  return [
    ["price", c.pricing?.price ?? null, prior.pricing?.price ?? null],
    ["estimate", c.pricing?.estimate ?? null, prior.pricing?.estimate ?? null],
    // A sized hold asked for a range; what it held is the answer, not part of the request.
    [
      "amount",
      c.pricing === undefined && c.amount_min === undefined ? c.amount : null,
      prior.pricing === undefined && prior.requested === undefined ? prior.amount : null,
    ],
    ["amount_min", c.amount_min ?? null, prior.requested?.amount_min ?? null],
    [
      "amount_max",
      c.pricing === undefined && c.amount_min !== undefined ? c.amount : null,
      prior.pricing === undefined && prior.requested !== undefined ? prior.requested.amount_max : null,
    ],
    ["ttl_seconds", c.ttl_seconds, prior.ttl_seconds],
    ["on_expiry", c.on_expiry, prior.on_expiry],
    ["context", c.context, prior.context],
    ["project_id", c.caller?.project_id ?? null, prior.caller?.project_id ?? null],
    ["metadata", c.metadata, prior.metadata],
  ];
}

/** The table entry of a command, with its type erased for generic callers. */
export function specOf(command: Command): CommandSpec<Command> {
  return COMMANDS[command.type] as unknown as CommandSpec<Command>;
}
