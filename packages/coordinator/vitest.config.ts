import { chorusTestConfig } from '../../vitest.shared.js';

export default chorusTestConfig({ testTimeout: 60_000 });
