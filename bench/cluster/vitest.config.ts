import { chorusTestConfig } from '../../vitest.shared.js';

export default chorusTestConfig();
