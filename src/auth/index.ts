/**
 * API tokens: what other domains and services may use. The bearer mechanics (principal,
 * `requireAuth`) are the HTTP platform's, in `src/platform/http/auth.ts`.
 */
export {
  API_TOKEN_PREFIX,
  type ApiTokenOwner,
  type ApiTokenSummary,
  type CreatedApiToken,
  createApiToken,
  findActiveTokenByHash,
  hashApiToken,
  isApiTokenFormat,
  listApiTokens,
  type ListApiTokensOptions,
  revokeApiToken,
  type RevokeResult,
} from './api-tokens.repository.ts'
export {
  createCachedAuthenticator,
  createTokenAuthenticator,
  type TokenAuthenticator,
  type TokenAuthenticatorOptions,
  type TokenLookup,
} from './token-authenticator.ts'
