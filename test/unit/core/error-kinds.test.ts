import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { ERROR_KINDS, errorKind, GrpcCode } from '../../../src/core/error-kinds.js';
import { UvmAggregateError, UvmError, type UvmErrorCode } from '../../../src/core/errors.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

describe('error kinds: every code → containerd errdefs kind and gRPC status', () => {
  it('docs/errors.md lists every code in the error table and maps each exactly as ERROR_KINDS does', () => {
    const doc = readFileSync(path.join(REPO, 'docs', 'errors.md'), 'utf8');
    const mapping = doc.slice(doc.indexOf('## containerd errdefs and gRPC status'));
    const rows = new Map([...mapping.matchAll(/^\| `([A-Z_]+)` \| `(\w+)` \| (\d+) /gm)].map((m) => [m[1]!, { errdefs: m[2]!, grpc: Number(m[3]) }]));
    expect([...rows.keys()].sort()).to.deep.equal(Object.keys(ERROR_KINDS).sort());
    for (const [code, kind] of Object.entries(ERROR_KINDS)) {
      expect(rows.get(code), code).to.deep.equal({ errdefs: kind.errdefs, grpc: kind.grpc });
      expect(doc.slice(0, doc.indexOf('## containerd errdefs')), `${code} in the error table`).to.include(`| \`${code}\` |`);
    }
  });

  it('errorKind: by code for UvmError and UvmAggregateError; Unknown for anything else', () => {
    expect(errorKind(new UvmError('NOT_FOUND', 'x'))).to.deep.equal({ errdefs: 'NotFound', grpc: GrpcCode.NotFound });
    expect(errorKind(new UvmAggregateError('RELEASE_FAILED', 'x', [new Error('e')]))).to.deep.equal({ errdefs: 'Internal', grpc: 13 });
    expect(errorKind(new TypeError('x'))).to.deep.equal({ errdefs: 'Unknown', grpc: 2 });
    const codes: UvmErrorCode[] = ['INVALID_SPEC', 'INVALID_ARGUMENT'];
    for (const code of codes) expect(ERROR_KINDS[code].grpc).to.equal(GrpcCode.InvalidArgument);
  });
});
