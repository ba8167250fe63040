// Times typed by a person and times shown to one: a datetime-local field's value (the browser's
// local time, no offset) to an RFC 3339 timestamp with the local offset, and durations in words.

const MINUTE_MS = 60_000;

// "2025-03-01T09:30" (or with seconds), read as this browser's local time, as
// "2025-03-01T09:30:00+01:00": the offset the local time zone has at that instant. null when the
// value is not a local date and time.
export function timestampOfLocalInput(value) {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d{1,3})?)?$/.exec(value);
  if (match === null) return null;
  const instant = new Date(value); // a date-time form without an offset is local time
  if (Number.isNaN(instant.getTime())) return null;
  const seconds = match[3] ?? ":00";
  return `${match[1]}T${match[2]}${seconds}${offsetText(instant.getTimezoneOffset())}`;
}

// getTimezoneOffset() is minutes behind UTC (-60 for UTC+01:00): "+01:00".
function offsetText(minutesBehind) {
  const ahead = -minutesBehind;
  const sign = ahead >= 0 ? "+" : "-";
  const hours = String(Math.floor(Math.abs(ahead) / 60)).padStart(2, "0");
  const minutes = String(Math.abs(ahead) % 60).padStart(2, "0");
  return `${sign}${hours}:${minutes}`;
}

// A Date as a datetime-local field's value, to the minute, in local time.
export function localInputValue(date) {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * MINUTE_MS);
  return shifted.toISOString().slice(0, 16);
}

// A duration in milliseconds (at least 0) as "2 d 3 h", "4 h 05 min", "3 min 07 s" or "9 s".
export function durationText(milliseconds) {
  const total = Math.max(0, Math.ceil(milliseconds / 1000));
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (value) => String(value).padStart(2, "0");
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${two(minutes)} min`;
  if (minutes > 0) return `${minutes} min ${two(seconds)} s`;
  return `${seconds} s`;
}
