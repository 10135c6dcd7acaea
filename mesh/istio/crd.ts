import type { AuthorizationPolicySpec, ObjectMetadata, RequestAuthenticationSpec } from './policies.js';

/**
 * The Istio security objects as Kubernetes carries them (apiVersion, kind, metadata, spec), with
 * the spec types the loader validates (policies.ts, from istio/api security/v1beta1): what
 * the generator writes is, by type, what the engine reads.
 */

/** The API versions of Istio's security CRDs (both served by Istio 1.22 and later). */
export type SecurityApiVersion = 'security.istio.io/v1' | 'security.istio.io/v1beta1';

/** Metadata with the namespace always set, as a generated object carries it. */
export type GeneratedMetadata = ObjectMetadata & { namespace: string };

export interface RequestAuthenticationObject {
  apiVersion: SecurityApiVersion;
  kind: 'RequestAuthentication';
  metadata: GeneratedMetadata;
  spec: RequestAuthenticationSpec;
}

export interface AuthorizationPolicyObject {
  apiVersion: SecurityApiVersion;
  kind: 'AuthorizationPolicy';
  metadata: GeneratedMetadata;
  spec: AuthorizationPolicySpec;
}

/** One Istio security object. */
export type IstioObject = RequestAuthenticationObject | AuthorizationPolicyObject;
