/** repositoryHit: which restore targets would destroy the repository being read (pure). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repositoryHit, type RepositoryPlace } from '../../src/restore/repo-target.js';

const place: RepositoryPlace = {
  dir: '/mnt/backup/repo',
  devices: new Map([
    ['7:3', '/dev/loop3'],
    ['8:0', '/dev/sda'],
  ]),
  files: new Map([['2049:1234', '/dev/loop3']]),
};

test('a path inside the repository, or the repository itself, is a hit', () => {
  assert.match(repositoryHit(place, { path: '/mnt/backup/repo/config' })!, /inside the repository \/mnt\/backup\/repo$/);
  assert.match(repositoryHit(place, { path: '/mnt/backup/repo/packs/ab/x.pack', file: '1:2' })!, /inside/);
  assert.match(repositoryHit(place, { path: '/mnt/backup/repo' })!, /inside/);
});

test('a sibling whose name starts like the repository is not inside it', () => {
  assert.equal(repositoryHit(place, { path: '/mnt/backup/repo2/x.img' }), null);
  assert.equal(repositoryHit(place, { path: '/mnt/backup/x.img', file: '2049:99' }), null);
});

test('a device or image file that holds the repository is a hit, named', () => {
  assert.equal(repositoryHit(place, { path: '/dev/sda', device: '8:0' }), 'it holds the filesystem of the repository /mnt/backup/repo (/dev/sda)');
  assert.equal(repositoryHit(place, { path: '/srv/fs.img', file: '2049:1234' }), 'it is the image file behind /dev/loop3, which holds the repository /mnt/backup/repo');
  assert.equal(repositoryHit(place, { path: '/dev/sdb', device: '8:16' }), null);
});
