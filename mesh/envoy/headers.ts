/**
 * How Envoy's HTTP/1 codec holds request headers: names lower-cased, and a repeated header that
 * Envoy keeps "inline" (its O(1) well-known headers) coalesced into one value joined by ","
 * (envoyproxy/envoy source/common/http/header_map_impl.cc insertByKey → appendToHeader).
 * Other repeated headers stay separate entries. The list is the one Envoy logs at start-up
 * ("request header map"), without its internal x-envoy-* headers.
 */
const INLINE_REQUEST_HEADERS = new Set(
  (
    ':authority,:method,:path,:protocol,:scheme,accept,accept-encoding,access-control-request-headers,access-control-request-method,' +
    'access-control-request-private-network,authentication,authorization,cache-control,cdn-loop,connection,content-encoding,content-length,' +
    'content-type,expect,grpc-accept-encoding,grpc-timeout,if-match,if-modified-since,if-none-match,if-range,if-unmodified-since,keep-alive,' +
    'origin,pragma,proxy-connection,proxy-status,referer,te,transfer-encoding,upgrade,user-agent,via,x-client-trace-id,' +
    'x-forwarded-client-cert,x-forwarded-for,x-forwarded-host,x-forwarded-port,x-forwarded-proto,x-request-id'
  ).split(','),
);

/** Request headers as Envoy holds them: lower-case names, every value of a repeated header. */
export type HeaderMap = Map<string, string[]>;

/** The client's headers as Envoy's HTTP/1 codec stores them (see the module comment). */
export function toHeaderMap(headers: Record<string, string | string[]> | undefined): HeaderMap {
  const map: HeaderMap = new Map();
  for (const [k, v] of Object.entries(headers ?? {})) {
    const key = k.toLowerCase();
    map.set(key, [...(map.get(key) ?? []), ...(Array.isArray(v) ? v : [v])].map(String));
  }
  for (const [k, v] of map) if (v.length > 1 && INLINE_REQUEST_HEADERS.has(k)) map.set(k, [v.join(',')]);
  return map;
}
