# One image for the whole suite. It runs the factory by default; the services by command:
#   docker run jwt-suite:1.0.0                                  # the factory
#   docker run jwt-suite:1.0.0 node dist/app/main.js servicea    # servicea (or serviceb, servicec)
# Keys, certificates and secrets are never baked in (.dockerignore): mount them (k8s: Secrets).

# --- build: every dependency, compile TypeScript to dist/ ---------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
COPY jwt-factory ./jwt-factory
COPY app ./app
COPY mesh ./mesh
COPY webui ./webui
COPY scripts ./scripts
# The browser console: its sources and the suite's Istio rules it bundles as examples.
COPY console ./console
COPY k8s/istio ./k8s/istio
RUN npm run build

# --- runtime: production dependencies and the compiled code only --------------------------
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# A container is reached from outside itself: listen on every address, and then only
# authenticated clients of OIDC_CONFIG mint (without OIDC_CONFIG the factory says so and stops).
ENV HOST=0.0.0.0 ISSUE_AUTH=client
WORKDIR /srv/jwt-suite
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /build/dist ./dist
# No app/.<service>.env in the image: those are the local defaults, and servicea's holds the demo
# client secret. In the image every setting comes from the environment (k8s: the ConfigMaps).
# The webui's page (tsc copies no static files): node dist/webui/main.js serves it from here.
COPY webui/public ./webui/public
# The image's "node" user, by number so that Kubernetes can check runAsNonRoot.
USER 1000:1000
EXPOSE 5555 3000 3001 3002 8443 9443
CMD ["node", "dist/jwt-factory/main.js"]
