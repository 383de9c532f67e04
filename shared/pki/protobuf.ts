/**
 * The few protobuf wire-format pieces Nebula's v1 certificate needs, written
 * the way Go's google.golang.org/protobuf marshals proto3: fields in number
 * order, default values left out, repeated uint32 packed, every length a
 * varint. Nebula re-marshals a certificate before checking its signature, so
 * any other encoding of the same values fails verification.
 */

export class ProtobufWriter {
  #buffer = new Uint8Array(256);
  #length = 0;

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#buffer.length) return;
    const grown = new Uint8Array(
      Math.max(this.#buffer.length * 2, this.#length + extra),
    );
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }

  /** Appends an unsigned varint; `value` must be a non-negative safe integer. */
  varint(value: number): this {
    this.#reserve(10);
    let rest = value;
    while (rest >= 0x80) {
      this.#buffer[this.#length++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.#buffer[this.#length++] = rest;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /** Appends a length-delimited field (wire type 2). */
  bytesField(field: number, bytes: Uint8Array): this {
    return this.varint(field * 8 + 2).varint(bytes.length).raw(bytes);
  }

  /** Appends a varint field (wire type 0). */
  varintField(field: number, value: number): this {
    return this.varint(field * 8).varint(value);
  }

  /** Appends a packed repeated uint32 field. */
  packedField(field: number, values: number[]): this {
    const payload = new ProtobufWriter();
    for (const value of values) payload.varint(value);
    return this.bytesField(field, payload.finish());
  }

  finish(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
}

/** One decoded field: a number for varints, bytes for length-delimited data. */
export interface ProtobufField {
  field: number;
  wireType: 0 | 2;
  value: number | Uint8Array;
}

export class ProtobufReader {
  #bytes: Uint8Array;
  #offset = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get done(): boolean {
    return this.#offset >= this.#bytes.length;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let index = 0; index < 10; index++) {
      if (this.#offset >= this.#bytes.length) {
        throw new RangeError("Truncated varint in certificate data");
      }
      const byte = this.#bytes[this.#offset++];
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(result)) {
          throw new RangeError("Varint in certificate data is too large");
        }
        return result;
      }
      scale *= 0x80;
    }
    throw new RangeError("Varint in certificate data is longer than 10 bytes");
  }

  /** Reads the next field; only the wire types Nebula's schema uses are accepted. */
  field(): ProtobufField {
    const key = this.varint();
    const field = Math.floor(key / 8);
    const wireType = key % 8;
    if (wireType === 0) return { field, wireType, value: this.varint() };
    if (wireType !== 2) {
      throw new RangeError(
        `Unexpected protobuf wire type ${wireType} for field ${field}`,
      );
    }
    const length = this.varint();
    if (this.#offset + length > this.#bytes.length) {
      throw new RangeError(
        `Field ${field} runs past the end of the certificate data`,
      );
    }
    const value = this.#bytes.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return { field, wireType, value };
  }
}

/** Decodes a packed repeated uint32 payload. */
export function readPacked(bytes: Uint8Array): number[] {
  const reader = new ProtobufReader(bytes);
  const values: number[] = [];
  while (!reader.done) values.push(reader.varint());
  return values;
}
