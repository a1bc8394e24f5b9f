/** What other domains and the services may use of the trading domain. */
export { contractIdOf, createAccounts, findUser, type NewAccount } from './accounts.repository.ts'
export { projectUser, rebuildUserProjections, userContractJson } from './user-projection.ts'
