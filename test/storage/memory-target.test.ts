import { MemoryTarget } from '../support/memory-target.js';
import { targetConformance } from './conformance.js';

targetConformance('MemoryTarget', async () => ({ target: new MemoryTarget(), cleanup: async () => {} }));
