import { expect } from 'chai';
import {
  LCOW_ENTROPY_SERVICE_ID,
  LCOW_GCS_SERVICE_ID,
  LCOW_LOG_SERVICE_ID,
  localHvSocketDir,
  localHvSocketPath,
  vsockServiceId,
} from '../../../src/hcs/hvsocket.js';

describe('hvsocket endpoints', () => {
  it('vsock service ids: Data1 is the port (go-winio VsockServiceID)', () => {
    expect(vsockServiceId(0x40000000)).to.equal(LCOW_GCS_SERVICE_ID);
    expect(vsockServiceId(1)).to.equal(LCOW_ENTROPY_SERVICE_ID);
    expect(vsockServiceId(109)).to.equal(LCOW_LOG_SERVICE_ID);
    expect(() => vsockServiceId(-1)).to.throw(RangeError);
  });

  it('local endpoint: $UVM_HVSOCK_DIR, else $TMPDIR/uvm-hvsock, else /tmp/uvm-hvsock; lowercase GUIDs', () => {
    const vm = '5F0D0E2C-1A2B-4C3D-8E9F-0A1B2C3D4E5F';
    expect(localHvSocketDir({ UVM_HVSOCK_DIR: '/run/hv' })).to.equal('/run/hv');
    expect(localHvSocketDir({ TMPDIR: '/var/tmp' })).to.equal('/var/tmp/uvm-hvsock');
    expect(localHvSocketDir({})).to.equal('/tmp/uvm-hvsock');
    expect(localHvSocketPath(vm, LCOW_GCS_SERVICE_ID, {})).to.equal(
      '/tmp/uvm-hvsock/5f0d0e2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f-40000000-facb-11e6-bd58-64006a7986d3.sock',
    );
    expect(() => localHvSocketPath('../x', LCOW_GCS_SERVICE_ID, {})).to.throw(TypeError);
    expect(() => localHvSocketPath(vm, 'x/../y', {})).to.throw(TypeError);
  });

  it('local endpoint: a path a Unix socket address cannot hold is refused, not cut short', () => {
    const vm = '5f0d0e2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f';
    // 36 + 1 + 36 + 5 = 78 bytes of file name: a directory of 28 bytes fits (107 with the slash), 29 does not.
    const dir = (n: number): string => '/' + 'd'.repeat(n - 1);
    expect(localHvSocketPath(vm, LCOW_GCS_SERVICE_ID, { UVM_HVSOCK_DIR: dir(28) })).to.have.length(107);
    expect(() => localHvSocketPath(vm, LCOW_GCS_SERVICE_ID, { UVM_HVSOCK_DIR: dir(29) })).to.throw(TypeError, /over the 107/);
  });
});
