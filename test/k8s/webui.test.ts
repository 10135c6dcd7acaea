import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { peerPrincipal } from '../../mesh/istio/rules.js';
import { evaluate } from '../../mesh/evaluate.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { loadWebuiConfig } from '../../webui/config.js';
import { K8S, WEBUI, named, ofKind, readYamlDocuments } from './manifests.js';
import { kustomizeBuild, type K8sObject } from './kustomize.js';
import { resolvePort, selects, type Deployment, type IstioPolicy, type Service } from './workloads.js';

/**
 * The webui overlay's cross-references: the login at the edge (a CUSTOM policy naming the
 * oauth2-proxy extension provider of the Istio install), the ingress routes, the seed's policies
 * (allow-ingress-gateway, allow-webui-to-backend with the webui's identity AND a user), and the
 * overlay's rules for serviceb run through the mesh engine.
 */

const objects = kustomizeBuild(WEBUI);
// The workloads policies may select: the Deployments and the key database's StatefulSet.
const deployments = [...ofKind<Deployment>(objects, 'Deployment'), ...ofKind<Deployment>(objects, 'StatefulSet')];
const services = ofKind<Service>(objects, 'Service');
const policies = [...ofKind<IstioPolicy>(objects, 'AuthorizationPolicy'), ...ofKind<IstioPolicy>(objects, 'RequestAuthentication')];
const NAMESPACE = 'jwt-suite';
const INGRESS = 'cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account';
const identities = new Set([...ofKind(objects, 'ServiceAccount').map((s) => peerPrincipal(NAMESPACE, s.metadata.name)), INGRESS]);
const operator = readYamlDocuments(path.join(K8S, 'install', 'istio-operator.yaml'))[0] as K8sObject & { spec: any };
const oauth2Proxy = named<Deployment>(objects, 'Deployment', 'oauth2-proxy').spec.template.spec.containers[0]!;
const flag = (name: string) => (oauth2Proxy.args ?? []).find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

/** The Service behind a cluster host name `svc.ns.svc.cluster.local`, and the container port its `port` reaches. */
function backendOf(host: string, port: number): { service: Service; containerPort: number | undefined } {
  const [name, ns] = host.split('.');
  expect(ns, host).toBe(NAMESPACE);
  const service = named<Service>(objects, 'Service', name!);
  const servicePort = service.spec.ports.find((p) => p.port === port);
  expect(servicePort, `${host}:${port}`).toBeDefined();
  const pod = deployments.find((d) => selects(service.spec.selector, d.spec.template.metadata.labels))!;
  return { service, containerPort: resolvePort(pod.spec.template.spec.containers[0]!, servicePort!.targetPort ?? port) };
}

describe('k8s webui overlay: the login at the edge', () => {
  it('the CUSTOM policy at the ingress gateway names the one extensionProviders entry, whose service is oauth2-proxy', () => {
    const custom = ofKind<IstioPolicy>(objects, 'AuthorizationPolicy').filter((p) => p.spec.action === 'CUSTOM');
    expect(custom.map((p) => `${p.metadata.namespace}/${p.metadata.name}`)).toEqual(['istio-system/webui-login-at-edge']);
    expect(custom[0]!.spec.selector.matchLabels).toEqual({ istio: 'ingressgateway' });
    const providers = operator.spec.meshConfig.extensionProviders as Array<{ name: string; envoyExtAuthzHttp: { service: string; port: number; headersToUpstreamOnAllow: string[]; includeRequestHeadersInCheck: string[] } }>;
    const provider = providers.find((p) => p.name === custom[0]!.spec.provider.name);
    expect(provider).toBeDefined();
    const { containerPort } = backendOf(provider!.envoyExtAuthzHttp.service, provider!.envoyExtAuthzHttp.port);
    expect(containerPort).toBe(Number(flag('http-address')!.split(':')[1]));
    // The check sees the session cookie and the XHR hints; the webui gets the user's token.
    expect(provider!.envoyExtAuthzHttp.includeRequestHeadersInCheck).toEqual(expect.arrayContaining(['cookie', 'accept', 'x-requested-with']));
    expect(provider!.envoyExtAuthzHttp.headersToUpstreamOnAllow).toContain('authorization');
  });

  it('oauth2-proxy\'s own /oauth2/ routes skip the check and reach it; its redirect_uri is one of them', () => {
    const custom = named<IstioPolicy>(objects, 'AuthorizationPolicy', 'webui-login-at-edge');
    expect(custom.spec.rules).toEqual([{ to: [{ operation: { hosts: ['webui.example'], notPaths: ['/oauth2/*'] } }] }]);
    const vs = named<IstioPolicy>(objects, 'VirtualService', 'webui');
    const route = vs.spec.http.find((r: any) => r.match?.[0]?.uri?.prefix === '/oauth2/');
    expect(backendOf(route.route[0].destination.host, route.route[0].destination.port.number).service.metadata.name).toBe('oauth2-proxy');
    const redirect = new URL(flag('redirect-url')!);
    expect(vs.spec.hosts).toContain(redirect.hostname);
    expect(redirect.pathname.startsWith('/oauth2/')).toBe(true);
  });

  it('oauth2-proxy talks to the factory: issuer = ISSUER, back channel to its Service, browser login through the ingress', () => {
    const factoryEnv = named<K8sObject & { data: Record<string, string> }>(objects, 'ConfigMap', ofKind<K8sObject & { data: Record<string, string> }>(objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('jwt-factory-config'))!.metadata.name).data;
    expect(flag('oidc-issuer-url')).toBe(factoryEnv.ISSUER);
    for (const f of ['redeem-url', 'oidc-jwks-url']) {
      const u = new URL(flag(f)!);
      expect(`${u.protocol}//${u.host}`, f).toBe(factoryEnv.PUBLIC_URL);
    }
    const login = new URL(flag('login-url')!);
    const loginVs = ofKind<IstioPolicy>(objects, 'VirtualService').find((v) => v.spec.hosts.includes(login.hostname))!;
    const exact = loginVs.spec.http.flatMap((r: any) => r.match.map((m: any) => m.uri.exact));
    expect(exact).toContain(login.pathname);
    // The browser-facing OIDC endpoints are pinned: GET /authorize, POST /login, GET /logout.
    expect(exact.sort()).toEqual(['/authorize', '/login', '/logout']);
    expect(backendOf(loginVs.spec.http[0].route[0].destination.host, loginVs.spec.http[0].route[0].destination.port.number).service.metadata.name).toBe('jwt-factory');
    // XHR gets 401, PKCE is on, the cookie cannot be Strict (the callback comes from another site).
    expect(flag('api-route')).toBe('^/api/');
    expect(flag('code-challenge-method')).toBe('S256');
    expect(flag('cookie-samesite')).toBe('lax');
    expect(flag('cookie-secure')).toBe('true');
  });

  it('the Gateway serves every host the VirtualServices route, with TLS', () => {
    const gw = named<IstioPolicy>(objects, 'Gateway', 'webui');
    const https = gw.spec.servers.find((s: any) => s.port.protocol === 'HTTPS');
    for (const vs of ofKind<IstioPolicy>(objects, 'VirtualService')) {
      expect(vs.spec.gateways).toEqual(['webui']);
      for (const h of vs.spec.hosts) expect(https.hosts).toContain(h);
    }
    expect(gw.spec.servers.find((s: any) => s.port.protocol === 'HTTP').tls).toEqual({ httpsRedirect: true });
  });
});

describe('k8s webui overlay: the seed\'s policies', () => {
  it('every policy of the namespace selects one workload, names identities that exist and ports it has', () => {
    for (const p of policies.filter((x) => x.metadata.namespace === NAMESPACE)) {
      const selector = p.spec.selector?.matchLabels as Record<string, string> | undefined;
      if (!selector) continue;
      const selected = deployments.filter((d) => selects(selector, d.spec.template.metadata.labels));
      expect(selected, p.metadata.name).toHaveLength(1);
      for (const rule of p.spec.rules ?? []) {
        for (const from of rule.from ?? []) for (const id of from.source.principals ?? []) expect(identities.has(id), `${p.metadata.name}: ${id}`).toBe(true);
        for (const to of rule.to ?? []) for (const port of to.operation.ports ?? []) expect(resolvePort(selected[0]!.spec.template.spec.containers[0]!, Number(port)), `${p.metadata.name}: ${port}`).toBe(Number(port));
      }
    }
  });

  it('allow-ingress-gateway: the webui takes requests from the ingress gateway\'s identity only', () => {
    const ap = named<IstioPolicy>(objects, 'AuthorizationPolicy', 'allow-ingress-gateway');
    expect(ap.spec).toEqual({ selector: { matchLabels: { app: 'webui' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: [INGRESS] } }] }] });
  });

  it.each(['serviceb', 'servicec'])('allow-webui-to-%s: the webui\'s identity AND a user token, in one source', (svc) => {
    const ap = named<IstioPolicy>(objects, 'AuthorizationPolicy', `allow-webui-to-${svc}`);
    expect(ap.spec.rules[0].from).toEqual([{ source: { principals: [peerPrincipal(NAMESPACE, 'webui')], requestPrincipals: ['https://jwt-factory//*'] } }]);
  });

  it('the webui\'s settings load through its own schema and name the backends\' Services and ports', () => {
    const container = named<Deployment>(objects, 'Deployment', 'webui').spec.template.spec.containers[0]!;
    const config = loadWebuiConfig(Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value])));
    expect(config.HOST).toBe('0.0.0.0');
    for (const [svc, url] of [['serviceb', config.SERVICEB_URL], ['servicec', config.SERVICEC_URL]] as const) {
      const u = new URL(url);
      expect(backendOf(u.hostname, Number(u.port)).service.metadata.name).toBe(svc);
    }
    expect(backendOf('webui.jwt-suite.svc.cluster.local', 80).containerPort).toBe(config.PORT);
  });

  it('no workload has two jwtRules for one issuer: the backends take the webui users\' tokens in the rule k8s/istio has', () => {
    const ras = ofKind<IstioPolicy>(objects, 'RequestAuthentication');
    const seen = new Map<string, string>();
    for (const ra of ras) {
      for (const rule of ra.spec.jwtRules) {
        const key = `${ra.spec.selector.matchLabels.app} ${rule.issuer}`;
        expect(seen.get(key), `${ra.metadata.name} repeats ${key}`).toBeUndefined();
        seen.set(key, ra.metadata.name);
      }
    }
    expect(named<IstioPolicy>(objects, 'RequestAuthentication', 'serviceb-jwt').spec.jwtRules[0].audiences).toContain('webui');
    expect(named<IstioPolicy>(objects, 'RequestAuthentication', 'servicec-jwt').spec.jwtRules[0]).toMatchObject({ jwksUri: expect.stringMatching(/\/keys\/servicea,oidc\/jwks\.json$/), audiences: ['servicec', 'webui'] });
  });

  it('through the mesh engine, serviceb admits the webui with a user\'s token and refuses it without one, or a user\'s token from servicea', async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'user-1', alg: 'RS256' };
    const ra = named<IstioPolicy>(objects, 'RequestAuthentication', 'serviceb-jwt');
    const token = await new SignJWT({ aud: 'webui' }).setProtectedHeader({ alg: 'RS256', kid: 'user-1' }).setIssuer('https://jwt-factory/').setSubject('alice').setIssuedAt().setExpirationTime('5m').sign(privateKey);
    const jwks = { [ra.spec.jwtRules[0].jwksUri]: { keys: [jwk] } };
    const loaded = loadPolicyObjects(policies, 'k8s/webui');
    const ask = (sourcePrincipal: string, headers: Record<string, string[]> = {}) =>
      evaluate({ policies: loaded, jwks, now: new Date(), workload: { namespace: NAMESPACE, labels: { app: 'serviceb' } }, request: { method: 'GET', path: '/hello', port: 3001, headers: { host: ['serviceb'], ...headers }, sourcePrincipal } });
    const withUser = await ask(peerPrincipal(NAMESPACE, 'webui'), { authorization: [`Bearer ${token}`] });
    expect(withUser.status, withUser.steps.join('\n')).toBe(200);
    expect(withUser.principal).toBe('https://jwt-factory//alice');
    expect((await ask(peerPrincipal(NAMESPACE, 'webui'))).status).toBe(403);
    expect((await ask(peerPrincipal(NAMESPACE, 'servicea'), { authorization: [`Bearer ${token}`] })).status).toBe(403);
  });
});
