/**
 * The account object's contract: every call the Worker makes to an account's Durable Object, and
 * what each answers. The object (durable-objects/account.ts) implements it; the Worker's layers
 * (src/app, src/http, src/env.ts) depend on it alone, never on the object's file, as
 * workers-oauth-provider's storage object implements a typed interface.
 *
 * Expected failures are values (`ReadResult`, `ExecuteResult` with a rejection), never thrown.
 */
import type { SignedCheckpoint } from "./audit/signing";
import type { Command } from "./domain/commands";
import type { LedgerEvent } from "./domain/events";
import type { Rejection } from "./domain/rejections";
import type { LimitView } from "./domain/spend-limits";
import type { AccountView, LotStatus, LotView, ReservationView } from "./domain/views";
import type { ProjectionStatus } from "./projection/producer/projector";

/** A read's answer: its body, or the rejection that names why there is none. */
export type ReadResult<T> = { ok: true; body: T } | { ok: false; rejection: Rejection };

/** One command's answer: its response body (a replay answers the original's), or its rejection. */
export type ExecuteResult = { ok: true; replayed: boolean; body: unknown } | { ok: false; rejection: Rejection };

export interface BatchResult {
  /** False when an atomic batch was rolled back by a rejection. */
  committed: boolean;
  /** One result per command, in order, up to the rejection that aborted an atomic batch. */
  results: ExecuteResult[];
}

export type { ProjectionStatus };

/** The format every segment's manifest entry names (docs/archive.md). */
export const SEGMENT_FORMAT = "openedge-ledger-segment/1";

/** The manifest entry of one segment, as written to R2 and kept in the object's SQLite. */
export interface SegmentEntry {
  format: typeof SEGMENT_FORMAT;
  account_id: string;
  /** 1 for the oldest segment, then 2, 3, ... */
  segment: number;
  first_seq: number;
  last_seq: number;
  /** The hash the first event chains from: the previous segment's last hash (genesis for seq 1). */
  prev_hash: string;
  first_hash: string;
  last_hash: string;
  first_at: string;
  last_at: string;
  /** Balances after the segment's last event. */
  balance: number;
  reserved: number;
  /** The object's key in the bucket, its length in bytes and its SHA-256 (lower-case hex). */
  object: string;
  bytes: number;
  sha256: string;
  /** A checkpoint of the last event, signed with the ledger's audit key. */
  checkpoint: SignedCheckpoint;
}

/** What replaying an account's log inside its object found. */
export interface VerifyReport {
  ok: boolean;
  /** Events replayed successfully. */
  events: number;
  head_seq: number;
  head_hash: string | null;
  balance: number;
  reserved: number;
  /** The first event that breaks the chain or a rule, or null. */
  first_bad_seq: number | null;
  problems: string[];
}

/** Where sealing stands (segments, what is archived, a retry). */
export interface ArchiveStatus {
  segments: number;
  archived_through: number;
  /** The segment being sealed, if any. */
  sealing: { first_seq: number; last_seq: number } | null;
  failures: number;
  retry_at: string | null;
  /** Segments sealed by this object since it started. */
  sealed_this_run: { segments: number; bytes: number };
}

export interface ChainHead {
  account_id: string;
  seq: number;
  head_hash: string;
  balance: number;
  reserved: number;
}

export interface BalancesAsOf {
  seq: number;
  at: string | null;
  balance: number;
  reserved: number;
  available: number;
}

export interface LotsQuery {
  status?: LotStatus | undefined;
  limit: number;
  cursor?: string | undefined;
}

export interface LotsPage {
  data: LotView[];
  next_cursor: string | null;
}

/** The calls of an account's Durable Object (one object per account, by name). */
export interface AccountObject extends Rpc.DurableObjectBranded {
  /** Decides and appends one command. */
  execute(command: Command): Promise<ExecuteResult>;
  /** Several commands in one transaction; `atomic`: a rejection rolls back them all. */
  executeBatch(commands: Command[], atomic: boolean): Promise<BatchResult>;
  getAccount(): Promise<ReadResult<AccountView>>;
  getReservation(reservationId: string): Promise<ReadResult<ReservationView>>;
  /** The account's spend limits (issue 28), each with its current window's figures. */
  listLimits(): Promise<ReadResult<{ data: LimitView[] }>>;
  /** The account's lots, oldest first; `cursor` is the `next_cursor` of the page before. */
  listLots(query: LotsQuery): Promise<ReadResult<LotsPage> | { ok: false; badCursor: true }>;
  listEvents(
    afterSeq: number,
    limit: number,
  ): Promise<ReadResult<{ events: LedgerEvent[]; next_after_seq: number | null }>>;
  /** The head of the chain and the balances there (what a checkpoint signs). */
  head(): Promise<ReadResult<ChainHead>>;
  /** Balances after event `seq`, or after the last event at or before `at`. */
  balanceAsOf(point: { seq: number } | { at: string }): Promise<ReadResult<BalancesAsOf>>;
  /** The balances recorded by event `seq` (reconciliation against a D1 snapshot). */
  balancesAt(seq: number): Promise<{ seq: number; balance: number; reserved: number } | null>;
  verify(): Promise<VerifyReport>;
  /** Manifest entries of the sealed segments after `afterSeq`, and how far the archive reaches. */
  segments(
    afterSeq: number,
    limit: number,
  ): Promise<ReadResult<{ segments: SegmentEntry[]; archived_through: number }>>;
  archiveStatus(): Promise<ArchiveStatus>;
  projectionStatus(): Promise<ProjectionStatus>;
  /** Rebuilds the account's read side from its log (admin); a D1 failure is returned, not thrown. */
  reproject(): Promise<ReadResult<ProjectionStatus> | { ok: false; failed: string }>;
  /** Expires what is due, re-arms the alarm and catches the projection up (the sweep's safety net). */
  catchUp(): Promise<ProjectionStatus>;
  /** Sends this account's due webhook deliveries now (an admin's redelivery, the cron's sweep). */
  wakeWebhooks(): Promise<void>;
}
