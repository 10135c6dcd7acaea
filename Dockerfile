# One image for the whole suite. It runs the factory by default; the services by command:
#   docker run jwt-suite:1.0.0                                  # the factory
#   docker run jwt-suite:1.0.0 node dist/app/main.js servicea    # servicea (or serviceb, servicec)
# Keys and certificates are never baked in (.dockerignore): mount them (k8s: Secrets).

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
WORKDIR /srv/jwt-suite
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /build/dist ./dist
# The services' default settings, beside the compiled app/main.js that reads them from its own
# directory; the process environment (k8s ConfigMaps) overrides every line.
COPY app/.servicea.env app/.serviceb.env app/.servicec.env ./dist/app/
# The webui's page (tsc copies no static files): node dist/webui/main.js serves it from here.
COPY webui/public ./webui/public
# The image's "node" user, by number so that Kubernetes can check runAsNonRoot.
USER 1000:1000
EXPOSE 5555 3000 3001 3002 8443 9443
CMD ["node", "dist/jwt-factory/main.js"]
