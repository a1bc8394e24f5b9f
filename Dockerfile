# One image for every Bourse service: `bourse <command>`, the compose `command:` picks which.
# Node 24 runs the TypeScript sources as they are (type stripping), so there is no build step.
FROM node:24-slim

WORKDIR /app

# Dependencies first, so a source change does not reinstall them. Dev dependencies (the
# compiler, the linter, the node@24 binary for machines with an older system Node) stay out.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY src ./src
COPY fixtures ./fixtures

USER node
ENTRYPOINT ["node", "src/cli.ts"]
CMD ["--help"]
