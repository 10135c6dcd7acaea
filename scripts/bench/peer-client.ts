/** The client the peers know, and the audience of the tokens they issue for the bench. */
export const PEER_CLIENT = { id: 'bench-client', secret: 'bench-client-secret-of-reasonable-length' } as const;
export const PEER_AUDIENCE = 'bench-audience';
