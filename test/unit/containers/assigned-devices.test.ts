import { expect } from 'chai';
import { containerDocumentDevices, parseDeviceId, planDevices } from '../../../src/containers/assigned-devices.js';
import { expectCodeSync } from '../../fakes/expect-code.js';

const spec = (devices: unknown): never => ({ windows: { devices } }) as never;

describe('assigned devices (windows.devices per idType)', () => {
  it('splits a numeric last "/" element off as the virtual function, nothing else', () => {
    expect(parseDeviceId('PCIP\\VEN_1\\3&ab/2')).to.deep.equal({ instancePath: 'PCIP\\VEN_1\\3&ab', virtualFunction: 2 });
    expect(parseDeviceId('PCIP\\VEN_1\\3&ab')).to.deep.equal({ instancePath: 'PCIP\\VEN_1\\3&ab', virtualFunction: 0 });
    expect(parseDeviceId('PCIP\\VEN_1\\0')).to.deep.equal({ instancePath: 'PCIP\\VEN_1\\0', virtualFunction: 0 });
    expect(parseDeviceId('PCIP\\VEN_1/99999')).to.deep.equal({ instancePath: 'PCIP\\VEN_1/99999', virtualFunction: 0 });
  });

  it('classifies per host: vPCI types assigned on LCOW/WCOW, document types on WCOW and process-isolated', () => {
    const devices = [
      { id: 'A/1', idType: 'gpu' },
      { id: 'B', idType: 'vpci' },
      { id: 'C', idType: 'vpci-instance-id' },
    ];
    expect(planDevices('linux', spec(devices)).map((d) => [d.kind, d.index, d.kind === 'vpci' ? d.virtualFunction : -1])).to.deep.equal([
      ['vpci', 0, 1],
      ['vpci', 1, 0],
      ['vpci', 2, 0],
    ]);
    const doc = [
      { id: 'PCIROOT(0)', idType: 'vpci-location-path' },
      { id: 'G1', idType: 'class' },
      { id: 'G2', idType: 'vpci-class-guid' },
    ];
    expect(containerDocumentDevices(planDevices('windows', spec(doc)))).to.deep.equal([
      { Type: 'DeviceInstance', LocationPath: 'PCIROOT(0)' },
      { InterfaceClassGuid: 'G1' },
      { InterfaceClassGuid: 'G2' },
    ]);
    expect(planDevices('process-isolated', spec(doc))).to.have.length(3);
    expect(planDevices('linux', {} as never)).to.deep.equal([]);
  });

  it('INVALID_SPEC naming the entry for anything else', () => {
    const cases: [Parameters<typeof planDevices>[0], unknown, string][] = [
      ['linux', [{ id: 'x', idType: 'usb' }], 'windows.devices[0]'],
      ['linux', [{ id: 'x', idType: 'gpu' }, { id: 'y', idType: 'class' }], 'windows.devices[1]'],
      ['process-isolated', [{ id: 'x', idType: 'gpu' }], 'windows.devices[0]'],
      ['windows', [{ id: '', idType: 'gpu' }], 'windows.devices[0]'],
      ['windows', [{ idType: 'gpu' }], 'windows.devices[0]'],
      ['windows', [{ id: 'x' }], 'windows.devices[0]'],
      ['windows', ['x'], 'windows.devices[0]'],
      ['windows', { id: 'x' }, 'windows.devices'],
    ];
    for (const [host, devices, field] of cases) {
      const err = expectCodeSync(() => planDevices(host, spec(devices)), 'INVALID_SPEC');
      expect(err.details.field, JSON.stringify(devices)).to.equal(field);
    }
  });
});
