/**
 * What `--backup ID|latest` (and `--device NAME`) mean, in every command that takes them
 * (restore, verify): `latest` is the newest backup, an id may be given by a prefix that names one
 * backup only, and a prefix that names several is an error listing them. Pure.
 */
import { BackupNotFoundError } from '../errors.js';
import { deviceKeyOf, type BackupRef } from './repository.js';

/**
 * The indexes of the one backup `spec` names (one per device it holds; only `device`'s when
 * given). `refs` is the repository's listing, oldest first; `location` names it in messages.
 */
export function selectBackup(refs: readonly BackupRef[], spec: string, device: string | undefined, location: string): BackupRef[] {
  if (refs.length === 0) throw new BackupNotFoundError(`repository ${location} has no backups`);
  let cands = refs;
  if (device !== undefined) {
    const key = deviceKeyOf(device);
    cands = refs.filter((r) => r.deviceKey === device || r.deviceKey === key);
    if (cands.length === 0) {
      const keys = [...new Set(refs.map((r) => r.deviceKey))].join(', ');
      throw new BackupNotFoundError(`no backup of device ${device} in the repository (devices: ${keys})`);
    }
  }
  let id: string;
  if (spec === 'latest') {
    id = cands[cands.length - 1]!.backupId;
  } else {
    const ids = [...new Set(cands.filter((r) => r.backupId.startsWith(spec)).map((r) => r.backupId))];
    if (ids.length === 0 || spec === '') throw new BackupNotFoundError(`no backup ${spec}${device !== undefined ? ` of device ${device}` : ''} in the repository`);
    if (ids.length > 1) {
      const shown = ids.length > 10 ? `${ids.slice(0, 10).join(', ')} and ${ids.length - 10} more` : ids.join(', ');
      throw new BackupNotFoundError(`backup id ${spec} is ambiguous: it begins ${ids.length} backups (${shown}); give more of the id`);
    }
    id = ids[0]!;
  }
  return cands.filter((r) => r.backupId === id);
}
