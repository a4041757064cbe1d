import { expect } from 'chai';
import { hostTimeZone, timeZoneFromWin32, UTC_TIME_ZONE, type Win32SystemTime } from '../../../src/hcs/host-time-zone.js';

/** A WCHAR[32] holding `s`, NUL-padded. */
const wchars = (s: string): number[] => [...s].map((c) => c.charCodeAt(0)).concat(new Array<number>(32 - s.length).fill(0));
const sysTime = (month: number, dayOfWeek: number, day: number, hour: number): Win32SystemTime => ({
  wYear: 0,
  wMonth: month,
  wDayOfWeek: dayOfWeek,
  wDay: day,
  wHour: hour,
  wMinute: 0,
  wSecond: 0,
  wMilliseconds: 0,
});

describe('host time zone (the WCOW null container Create, bridge delivery)', () => {
  it('converts TIME_ZONE_INFORMATION as hcsshim does: names up to their NUL, both dates, zero fields left out', () => {
    // Pacific Time: bias +480 min, DST from the 2nd Sunday of March 02:00 to the 1st Sunday of November 02:00.
    const tz = timeZoneFromWin32({
      Bias: 480,
      StandardName: wchars('Pacific Standard Time'),
      StandardDate: sysTime(11, 0, 1, 2),
      StandardBias: 0,
      DaylightName: wchars('Pacific Daylight Time'),
      DaylightDate: sysTime(3, 0, 2, 2),
      DaylightBias: -60,
    });
    expect(JSON.parse(JSON.stringify(tz))).to.deep.equal({
      Bias: 480,
      StandardName: 'Pacific Standard Time',
      StandardDate: { Month: 11, Day: 1, Hour: 2 },
      DaylightName: 'Pacific Daylight Time',
      DaylightDate: { Month: 3, Day: 2, Hour: 2 },
      DaylightBias: -60,
    });
  });

  it('UTC is hcsshim’s opt-out value; off Windows the host has no Windows zone and UTC is given', () => {
    expect(UTC_TIME_ZONE).to.deep.equal({ StandardName: 'Coordinated Universal Time', DaylightName: 'Coordinated Universal Time' });
    if (process.platform !== 'win32') expect(hostTimeZone()).to.equal(UTC_TIME_ZONE);
  });
});
