/** Facts of the suite that several parts must agree on. */

/** The factory's default ISSUER: the `iss` of its tokens and the issuer the mesh rules trust. */
export const DEFAULT_ISSUER = 'https://jwt-factory/';

/** The Kubernetes namespace of k8s/ (certificate DNS names, mesh rules, Secrets). */
export const DEFAULT_NAMESPACE = 'jwt-suite';
