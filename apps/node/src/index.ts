export { runNode, StartupError } from './run.js';
export { loadSettings, ConfigError, DEFAULTS, type NodeSettings, type ConfigSources } from './config.js';
