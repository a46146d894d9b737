import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { demultiplexDockerStream, ustarArchive } from '../../src/agent/docker-wire.ts';

const work = mkdtempSync(join(tmpdir(), 'arcnet-tar-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('ustarArchive', () => {
  // The system tar is the reference reader: what it accepts and extracts byte for byte, an engine accepts too.
  it('is read back by tar with the same names, modes and bytes', () => {
    const archive = ustarArchive([
      { name: 'arcnet', type: 'directory', mode: 0o755 },
      { name: 'arcnet/input', type: 'file', mode: 0o640, data: allBytes },
      { name: 'arcnet/empty', type: 'file', mode: 0o600 },
    ]);
    const file = join(work, 'a.tar');
    writeFileSync(file, archive);
    const listing = execFileSync('tar', ['-tvf', file], { encoding: 'utf8' });
    expect(listing).toMatch(/^drwxr-xr-x .* arcnet\/$/m);
    expect(listing).toMatch(/^-rw-r----- .* 256 .* arcnet\/input$/m);
    expect(listing).toMatch(/^-rw------- .* 0 .* arcnet\/empty$/m);

    const out = join(work, 'out');
    mkdirSync(out);
    execFileSync('tar', ['-xf', file, '-C', out]);
    expect(new Uint8Array(readFileSync(join(out, 'arcnet/input')))).toEqual(allBytes);
    expect(statSync(join(out, 'arcnet/empty')).size).toBe(0);
  });

  it('pads to 512-byte blocks and ends with two zero blocks', () => {
    const archive = ustarArchive([{ name: 'x', type: 'file', mode: 0o644, data: new Uint8Array(513).fill(7) }]);
    // header + 2 data blocks + 2 end blocks
    expect(archive.length).toBe(512 * 5);
    expect(archive.subarray(512 * 3).every((byte) => byte === 0)).toBe(true);
    expect(archive.subarray(512, 512 + 513).every((byte) => byte === 7)).toBe(true);
  });

  it('gives the same bytes for the same entries', () => {
    const entries = [{ name: 'f', type: 'file' as const, mode: 0o644, data: allBytes }];
    expect(ustarArchive(entries)).toEqual(ustarArchive(entries));
  });

  it('refuses names that do not fit the header', () => {
    expect(() => ustarArchive([{ name: 'n'.repeat(101), type: 'file', mode: 0o644 }])).toThrow(/1\.\.100 bytes/);
    expect(() => ustarArchive([{ name: '', type: 'file', mode: 0o644 }])).toThrow(/1\.\.100 bytes/);
  });
});

function frame(stream: number, payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const out = new Uint8Array(8 + bytes.length);
  out[0] = stream;
  new DataView(out.buffer).setUint32(4, bytes.length, false);
  out.set(bytes, 8);
  return out;
}

function joined(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => [...part]));
}

describe('demultiplexDockerStream', () => {
  const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

  it('routes frames to stdout and stderr in order', () => {
    const { stdout, stderr } = demultiplexDockerStream(
      joined(frame(1, 'one '), frame(2, 'err1 '), frame(1, 'two'), frame(2, 'err2')),
    );
    expect(text(stdout)).toBe('one two');
    expect(text(stderr)).toBe('err1 err2');
  });

  it('is binary-safe, including payloads that look like headers', () => {
    const tricky = joined(frame(2, allBytes), allBytes.subarray(0, 8));
    const { stdout, stderr } = demultiplexDockerStream(frame(1, tricky));
    expect(stdout).toEqual(tricky);
    expect(stderr.length).toBe(0);
  });

  it('handles empty input, empty frames, a truncated last frame, and drops stdin frames', () => {
    expect(demultiplexDockerStream(new Uint8Array(0))).toEqual({ stdout: new Uint8Array(0), stderr: new Uint8Array(0) });
    const truncated = frame(2, 'complete?').subarray(0, 8 + 4);
    const { stdout, stderr } = demultiplexDockerStream(joined(frame(1, ''), frame(0, 'in'), frame(1, 'ok'), truncated));
    expect(text(stdout)).toBe('ok');
    expect(text(stderr)).toBe('comp');
  });

  it('ignores a dangling partial header', () => {
    const { stdout } = demultiplexDockerStream(joined(frame(1, 'ok'), new Uint8Array([1, 0, 0])));
    expect(text(stdout)).toBe('ok');
  });
});
