mod store_contract;
