import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { sha256HexJs } from "../../src/domain/sha256";

const reference = (text: string) => createHash("sha256").update(text).digest("hex");

/** A deterministic generator (no Math.random: a failure must reproduce). */
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// Characters of 1, 2, 3 and 4 UTF-8 bytes, and a lone surrogate (encoded as U+FFFD by both).
const ALPHABET = ["a", "Z", "0", '"', "{", "é", "ß", "€", "中", "😀", "\u{10FFFF}", "\uD800"];

describe("sha256HexJs", () => {
  it("gives the FIPS 180-4 example digests", () => {
    expect(sha256HexJs("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(sha256HexJs("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256HexJs("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")).toBe(
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    );
    expect(sha256HexJs("a".repeat(1_000_000))).toBe("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  });

  it("equals node:crypto at every length around the block boundaries", () => {
    for (let n = 0; n <= 200; n++) {
      const text = "x".repeat(n);
      expect(sha256HexJs(text), `length ${n}`).toBe(reference(text));
    }
  });

  it("equals node:crypto on random strings of multi-byte characters", () => {
    const random = lcg(12345);
    for (let i = 0; i < 500; i++) {
      const length = Math.floor(random() * 400);
      let text = "";
      for (let j = 0; j < length; j++) text += ALPHABET[Math.floor(random() * ALPHABET.length)];
      expect(sha256HexJs(text), JSON.stringify(text)).toBe(reference(text));
    }
  });

  it("gives the same digest after a longer input grew its buffer", () => {
    const short = "a chain link";
    const before = sha256HexJs(short);
    sha256HexJs("€".repeat(100_000));
    expect(sha256HexJs(short)).toBe(before);
    expect(before).toBe(reference(short));
  });
});
