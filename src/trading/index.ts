/** What other domains and the services may use of the trading domain. */
export { createAccounts, findUser, type NewAccount, resetAccountCredit } from './accounts.repository.ts'
export { projectUser, rebuildUserProjections } from './user-projection.ts'
