/**
 * The time zone a WCOW guest is given when the shim owns its GCS bridge: the null container's
 * Create carries it (gcs-bridge.md, "cold start with SendHostCreateMessage"). HCS does this itself
 * when it owns the connection; hcsshim redoes it with the host's time zone
 * (`GetTimeZoneInformation`), or UTC when the shim opts out of inheriting it.
 *
 * On Windows the host's zone is read through kernel32 (koffi); elsewhere (the simulator) there is
 * no Windows time zone to read and UTC is used. What has not been run on Windows: docs/hcs.md.
 */
import koffi from 'koffi';

/** `SYSTEMTIME` in the HCS schema (`hcsschema.SystemTime`; every field `omitempty`). */
export interface SystemTime {
  Year?: number;
  Month?: number;
  DayOfWeek?: number;
  Day?: number;
  Hour?: number;
  Minute?: number;
  Second?: number;
  Milliseconds?: number;
}

/** `hcsschema.TimeZoneInformation`: the fields hcsshim sends (zero values omitted, as `omitempty`). */
export interface TimeZoneInformation {
  Bias?: number;
  StandardName?: string;
  StandardDate?: SystemTime;
  StandardBias?: number;
  DaylightName?: string;
  DaylightDate?: SystemTime;
  DaylightBias?: number;
}

/** hcsshim's time zone when the host's is not inherited (its `Bias: 0` is left out by `omitempty`). */
export const UTC_TIME_ZONE: TimeZoneInformation = Object.freeze({ StandardName: 'Coordinated Universal Time', DaylightName: 'Coordinated Universal Time' });

/** `TIME_ZONE_INFORMATION` as koffi decodes it (the names as UTF-16 code units). */
export interface Win32TimeZoneInformation {
  Bias: number;
  StandardName: ArrayLike<number>;
  StandardDate: Win32SystemTime;
  StandardBias: number;
  DaylightName: ArrayLike<number>;
  DaylightDate: Win32SystemTime;
  DaylightBias: number;
}
export interface Win32SystemTime {
  wYear: number;
  wMonth: number;
  wDayOfWeek: number;
  wDay: number;
  wHour: number;
  wMinute: number;
  wSecond: number;
  wMilliseconds: number;
}

/** A WCHAR[32] up to its NUL. */
function wideString(units: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < units.length && units[i] !== 0; i++) s += String.fromCharCode(units[i]!);
  return s;
}

/** Zero numbers left out, as the schema's `omitempty` does. */
function systemTime(t: Win32SystemTime): SystemTime {
  const all: Required<SystemTime> = { Year: t.wYear, Month: t.wMonth, DayOfWeek: t.wDayOfWeek, Day: t.wDay, Hour: t.wHour, Minute: t.wMinute, Second: t.wSecond, Milliseconds: t.wMilliseconds };
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== 0)) as SystemTime;
}

/**
 * The schema form of a `TIME_ZONE_INFORMATION`, as hcsshim converts it: both dates always present
 * (pointers), zero numbers and empty names left out (the schema's `omitempty`).
 */
export function timeZoneFromWin32(raw: Win32TimeZoneInformation): TimeZoneInformation {
  const tz: TimeZoneInformation = {};
  if (raw.Bias !== 0) tz.Bias = raw.Bias;
  const standardName = wideString(raw.StandardName);
  if (standardName !== '') tz.StandardName = standardName;
  tz.StandardDate = systemTime(raw.StandardDate);
  if (raw.StandardBias !== 0) tz.StandardBias = raw.StandardBias;
  const daylightName = wideString(raw.DaylightName);
  if (daylightName !== '') tz.DaylightName = daylightName;
  tz.DaylightDate = systemTime(raw.DaylightDate);
  if (raw.DaylightBias !== 0) tz.DaylightBias = raw.DaylightBias;
  return tz;
}

/** `GetTimeZoneInformation` fails with this (TIME_ZONE_ID_INVALID). */
const TIME_ZONE_ID_INVALID = 0xffffffff;

let readHostZone: (() => Win32TimeZoneInformation | undefined) | undefined;

/** The host's time zone (Windows), or UTC (elsewhere, or when the host's cannot be read). */
export function hostTimeZone(): TimeZoneInformation {
  if (process.platform !== 'win32') return UTC_TIME_ZONE;
  readHostZone ??= bindGetTimeZoneInformation();
  const raw = readHostZone();
  return raw ? timeZoneFromWin32(raw) : UTC_TIME_ZONE;
}

function bindGetTimeZoneInformation(): () => Win32TimeZoneInformation | undefined {
  const kernel32 = koffi.load('kernel32.dll');
  // Anonymous types: koffi's named types are process-global.
  const systemTimeType = koffi.struct({
    wYear: 'uint16',
    wMonth: 'uint16',
    wDayOfWeek: 'uint16',
    wDay: 'uint16',
    wHour: 'uint16',
    wMinute: 'uint16',
    wSecond: 'uint16',
    wMilliseconds: 'uint16',
  });
  const tziType = koffi.struct({
    Bias: 'int32',
    StandardName: koffi.array('uint16', 32, 'Array'),
    StandardDate: systemTimeType,
    StandardBias: 'int32',
    DaylightName: koffi.array('uint16', 32, 'Array'),
    DaylightDate: systemTimeType,
    DaylightBias: 'int32',
  });
  const getTimeZoneInformation = kernel32.func('GetTimeZoneInformation', 'uint32', [koffi.out(koffi.pointer(tziType))]);
  return () => {
    const out: Record<string, unknown> = {};
    const id = getTimeZoneInformation(out) as number;
    return id === TIME_ZONE_ID_INVALID ? undefined : (out as unknown as Win32TimeZoneInformation);
  };
}
