/**
 * The driver suite against the real module. Runs only with BKP_TEST_BLKSNAP_REAL=1; then a
 * missing module is a failure, not a skip, so the real run cannot silently stop happening.
 */
import { test } from 'node:test';
import { blksnapDriverSuite } from './driver-suite.js';
import { REAL } from '../support/blksnap-fake.js';

if (REAL) blksnapDriverSuite('real');
else test('blksnap driver suite against the real module (set BKP_TEST_BLKSNAP_REAL=1)', { skip: 'BKP_TEST_BLKSNAP_REAL is not 1' }, () => undefined);
