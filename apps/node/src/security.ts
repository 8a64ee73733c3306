import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { type Authenticator, tokenAuthenticator } from './auth.js';
import type { NodeSettings } from './config.js';
import { ConfigError } from './errors.js';

/** What the settings' files give a starting node: TLS material and the authenticator, each when on. */
export interface Security {
  tls: { cert: Buffer; key: Buffer; ca: Buffer } | undefined;
  authenticator: Authenticator | undefined;
}

/**
 * Reads the files the security settings name, so that a missing or
 * unreadable file, a key that does not belong to its certificate, or a
 * certificate that does not name the node's address stops the start with one
 * line, before the port listens.
 */
export function loadSecurity(settings: NodeSettings, logger: Logger): Security {
  let tls: Security['tls'];
  if (settings.internode_encryption === 'all') {
    tls = { cert: readPem('tls_cert_file', settings.tls_cert_file), key: readPem('tls_key_file', settings.tls_key_file), ca: readPem('tls_ca_file', settings.tls_ca_file) };
    checkTls(tls, settings);
  } else if (settings.tls_cert_file || settings.tls_key_file || settings.tls_ca_file) {
    logger.warn('TLS files are set but internode_encryption is none and client_encryption false: the port is not encrypted');
  }
  let authenticator: Authenticator | undefined;
  if (settings.authenticator === 'token') authenticator = tokenAuthenticator(settings.authenticator_tokens_file, logger);
  else if (settings.authenticator_tokens_file) logger.warn('authenticator_tokens_file is set but authenticator is none: clients are not authenticated');
  return { tls, authenticator };
}

function readPem(setting: string, path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new ConfigError(`${setting} ${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  if (!bytes.includes('-----BEGIN ')) throw new ConfigError(`${setting} ${path} is not a PEM file`);
  return bytes;
}

function checkTls(tls: { cert: Buffer; key: Buffer; ca: Buffer }, settings: NodeSettings): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(tls.cert);
  } catch (error) {
    throw new ConfigError(`tls_cert_file ${settings.tls_cert_file} holds no certificate: ${firstLine(error)}`);
  }
  try {
    new X509Certificate(tls.ca);
  } catch (error) {
    throw new ConfigError(`tls_ca_file ${settings.tls_ca_file} holds no certificate: ${firstLine(error)}`);
  }
  try {
    createSecureContext({ cert: tls.cert, key: tls.key, ca: tls.ca });
  } catch (error) {
    throw new ConfigError(`tls_key_file ${settings.tls_key_file} cannot be used with tls_cert_file ${settings.tls_cert_file}: ${firstLine(error)}`);
  }
  // Peers check that a node's certificate names the address they dialed, its listen address; better to hear it now than from every peer.
  const host = settings.listen_address.slice(0, settings.listen_address.lastIndexOf(':'));
  const named = isIP(host) ? cert.checkIP(host) : cert.checkHost(host);
  if (named === undefined) throw new ConfigError(`tls_cert_file ${settings.tls_cert_file} does not name ${host}, this node's listen address (peers would refuse it): its subject alternative names are ${cert.subjectAltName ?? 'none'}`);
  if (new Date(cert.validTo) < new Date()) throw new ConfigError(`tls_cert_file ${settings.tls_cert_file} expired on ${cert.validTo}`);
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}
