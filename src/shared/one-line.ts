/**
 * Every message bkp prints about a failure is one line and never shows a secret: control
 * characters (a newline in a device path) are written as escapes, and the user:password part of a
 * URL is replaced by ***.
 */

/** `s3://user:pw@host/x` → `s3://***@host/x` (any scheme). */
export function redactCredentials(s: string): string {
  return s.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/@\s"]*@/gi, '$1***@');
}

/** Control characters as escapes: `a\nb` → `a\\nb`, other C0/C1 controls and DEL as `\\xNN`. */
export function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

export function oneLine(message: string): string {
  return escapeControls(redactCredentials(message));
}

/** Whether a path or name the user gave holds a control character (bkp refuses those). */
export function hasControlCharacter(s: string): boolean {
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  return /[\u0000-\u001f\u007f-\u009f]/.test(s);
}
