// uvmctl on the simulator: the examples with assigned devices (lcow-gpu) and a process-isolated
// container (wcow-argon), end to end through the CLI, checked in the simulator's trace.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RunReport } from '../../src/cli/run-report.js';
import { readTrace, REPO, runCli, type TraceLine } from './cli-support.js';

async function run(example: string, command = 'run'): Promise<{ report: RunReport; trace: TraceLine[]; stdout: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), `uvmctl-${example}-`));
  try {
    const traceFile = path.join(dir, 'trace.jsonl');
    const result = await runCli([command, path.join(REPO, 'examples', example, 'scenario.json'), '--json', '--trace', traceFile, ...(command === 'run' ? ['--check-simulator'] : [])]);
    expect(result.code, result.stderr).to.equal(0);
    return { report: JSON.parse(result.stdout) as RunReport, trace: await readTrace(traceFile), stdout: result.stdout };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('uvmctl on the simulator: assigned devices and a process-isolated container', function () {
  this.timeout(60000);

  it('lcow-gpu: the GPU and the NIC function are assigned once, shared, and removed host-only at the end', async () => {
    const { report, trace } = await run('lcow-gpu');
    expect(report.ok).to.equal(true);
    const vpci = trace.filter((t) => t.fn === 'HcsModifyComputeSystem' && String(t.doc?.ResourcePath ?? '').includes('/VirtualPci/'));
    // Bridge delivery (the CLI's default): HCS gets the host halves only; each Add's guest half
    // (VPCIDevice with the device's VMBus GUID) follows its host half over the bridge.
    expect(vpci.map((t) => `${t.doc.RequestType} ${t.doc.GuestRequest ? 'host+guest' : 'host'}`).sort()).to.deep.equal([
      'Add host',
      'Add host',
      'Remove host',
      'Remove host',
    ]);
    for (const add of vpci.filter((t) => t.doc.RequestType === 'Add')) {
      const guid = String(add.doc.ResourcePath).split('/').pop();
      const g = trace.findIndex((t) => t.fn === 'bridge:ModifySettings' && t.doc?.Request?.Settings?.VMBusGUID === guid);
      expect(g, `the guest half of ${guid}`).to.be.greaterThan(trace.indexOf(add));
      expect(trace[g]!.doc.Request).to.deep.equal({ RequestType: 'Add', ResourceType: 'VPCIDevice', Settings: { VMBusGUID: guid } });
    }
    expect(vpci.every((t) => t.hr === 0)).to.equal(true);
    expect(report.teardown.remaining).to.deep.equal([]);
    expect(report.teardown.hotAdded).to.equal(0);
  });

  it('lcow-gpu plan shows each device and that infer shares the GPU', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-plan-gpu-'));
    try {
      const result = await runCli(['plan', path.join(REPO, 'examples', 'lcow-gpu', 'scenario.json')]);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout).to.match(/devices[\s\S]*gpu[\s\S]*vPCI function 0, new[\s\S]*vpci-instance-id[\s\S]*vPCI function 2, new/);
      expect(result.stdout).to.match(/Container infer[\s\S]*gpu[\s\S]*vPCI function 0, shared/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('wcow-argon: the process-isolated container\'s layer calls are in the trace, in containerd\'s order, and undone', async () => {
    const { report, trace } = await run('wcow-argon');
    expect(report.ok).to.equal(true);
    const argon = report.containers.find((c) => c.id === 'argon')!;
    const target = path.join(REPO, 'examples', 'wcow-argon', 'bundles', 'argon', 'rootfs');
    expect(argon.rootfs).to.equal(target);
    const layerCalls = trace.filter((t) => ['ActivateLayer', 'PrepareLayer', 'GetLayerMountPath', 'BfSetupFilter', 'BfRemoveMapping', 'UnprepareLayer', 'DeactivateLayer'].includes(t.fn));
    expect(layerCalls.map((t) => t.fn)).to.deep.equal([
      'ActivateLayer',
      'PrepareLayer',
      'GetLayerMountPath',
      'GetLayerMountPath',
      'BfSetupFilter',
      'BfRemoveMapping',
      'UnprepareLayer',
      'DeactivateLayer',
    ]);
    expect(layerCalls.every((t) => t.hr === 0)).to.equal(true);
    const host = (rel: string): string => path.join(REPO, 'examples', 'wcow-argon', 'host', rel);
    expect(layerCalls[1]!.doc.Layers.map((l: { Path: string }) => l.Path)).to.deep.equal([host('layers/app'), host('layers/base')]);
    expect(layerCalls[4]!.doc).to.deep.include({ Root: target, Flags: 0x40 });
    expect(existsSync(`${target}:containerd.io-source`)).to.equal(false);
    // Nothing of argon's went into the UVM: web's layer is the only VSMB layer share.
    expect(trace.filter((t) => t.fn === 'HcsModifyComputeSystem' && JSON.stringify(t.doc).includes(host('layers/app')))).to.deep.equal([]);
  });
});
